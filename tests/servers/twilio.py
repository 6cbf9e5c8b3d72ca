"""A local server on 127.0.0.1 that speaks Twilio's Messages API (2010-04-01).

    async with TwilioServer() as srv:
        settings = SmsSettings(enabled=True, account_sid=ACCOUNT_SID, from_number=FROM_NUMBER,
                               to_number="+447700900123", api_base=srv.url)
        srv.faults.status(503, times=2)       # next answers: a server error
        srv.faults.rate_limit()               # 429 (Twilio error 20429)
        srv.faults.hang(5.0)                  # answer late
        srv.messages                          # the SMS that were accepted

`POST /2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP basic auth (account SID and
auth token) and the form fields To, From, Body; 201 with the Message resource. Errors are
Twilio's JSON: {"code", "message", "more_info", "status"} — 20003 for a wrong token (401),
21211 for an invalid To number (400), 21606 for a From number the account does not own.
"""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from tests.servers.base import HOST, LocalHttpServer

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-SECRET-auth-token-0f1e2d3c4b5a"
FROM_NUMBER = "+15005550006"
_E164 = re.compile(r"\+[1-9]\d{6,14}")


@dataclass
class Sms:
    to: str
    from_: str
    body: str
    sid: str


@dataclass
class _Fault:
    status: int
    times: int
    delay: float = 0.0


@dataclass
class Faults:
    queue: list[_Fault] = field(default_factory=list)

    def status(self, status: int, times: int = 1) -> None:
        self.queue.append(_Fault(status, times))

    def rate_limit(self, times: int = 1) -> None:
        self.status(429, times)

    def hang(self, seconds: float, times: int = 1) -> None:
        self.queue.append(_Fault(0, times, delay=seconds))

    def take(self) -> _Fault | None:
        if not self.queue:
            return None
        fault = self.queue[0]
        fault.times -= 1
        if fault.times <= 0:
            self.queue.pop(0)
        return fault


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status},
        status=status,
    )


class TwilioServer(LocalHttpServer):
    def __init__(self, *, port: int = 0) -> None:
        super().__init__(port=port)
        self.faults = Faults()
        self.messages: list[Sms] = []
        self.attempts = 0
        self.app.router.add_post(r"/2010-04-01/Accounts/{sid}/Messages.json", self._create)

    async def _create(self, request: web.Request) -> web.Response:
        self.attempts += 1
        sid = request.match_info["sid"]
        auth = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if sid != ACCOUNT_SID or auth != expected:
            return _error(401, 20003, "Authenticate")
        fault = self.faults.take()
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status == 429:
                return _error(429, 20429, "Too Many Requests")
            if fault.status:
                return _error(fault.status, fault.status, "Service unavailable")
        form = await request.post()
        to, from_, body = str(form.get("To", "")), str(form.get("From", "")), str(form.get("Body", ""))
        if not _E164.fullmatch(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if from_ != FROM_NUMBER:
            return _error(400, 21606, f"The From phone number {from_} is not a valid, SMS-capable inbound phone "
                                      "number or short code for your account.")
        if not body:
            return _error(400, 21602, "Message body is required.")
        message_sid = "SM" + uuid.uuid4().hex
        self.messages.append(Sms(to, from_, body, message_sid))
        now = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        return web.json_response(
            {
                "account_sid": ACCOUNT_SID, "api_version": "2010-04-01", "body": body, "date_created": now,
                "date_sent": None, "date_updated": now, "direction": "outbound-api", "error_code": None,
                "error_message": None, "from": from_, "messaging_service_sid": None, "num_media": "0",
                "num_segments": "1", "price": None, "price_unit": "USD", "sid": message_sid, "status": "queued",
                "subresource_uris": {"media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}/Media.json"},
                "to": to, "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}.json",
            },
            status=201,
        )

