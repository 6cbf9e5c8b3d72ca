"""The desktop's billing client: talks to the relay, keeps the account fresh, publishes payment events.

    load, save = keyring_token_io(secret_store)
    client = BillingClient(settings.billing.relay_url, guard=guards.get("relay"), bus=bus,
                           load_token=load, save_token=save)
    account = await client.start()             # None until the user creates an account
    account = await client.create_account("me@example.com")
    url = await client.checkout_url("points_500")      # open it in the browser
    await client.transfer("friend@example.com", 50)
    client.add_listener(lambda account: ...)   # called on the loop whenever the account changes
    await client.close()

Every HTTP call goes through the `relay` Guard. Calls that create something
(checkout, portal, transfer, spend) send an Idempotency-Key made once per user
action, so the guard may retry them: the relay answers a repeat with the first
result. Creating an account is tried once (a retry could not get the token back).

Payment notices arrive on the relay's websocket (opened with the `websockets`
library, through the guard) and, while it is down, by polling
`/notices?after=<last seq>`; each notice is handled once, by sequence number.
`payment.succeeded`, `payment.failed` and `payment.refunded` are published on
the bus at Priority.HIGH with a `PaymentEvent` payload.

Failures reach callers as `BillingError` sentences. The token is held in
memory and in the keyring only; it never appears in a message, log or repr.
This module never imports Qt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from app.billing.errors import BillingError
from app.billing.models import PAYMENT_TOPICS, AccountView, LedgerRow, PaymentEvent, RelayNotice
from app.billing.token_store import StoredToken, TokenLoader, TokenSaver
from app.bus import Priority
from app.resilience import FailureKind, Guard, ResilienceError, classify_status
from app.resilience.guard import Publisher

__all__ = ["BillingClient", "NotSignedIn", "RelayError", "RelayUnavailable"]

_log = logging.getLogger(__name__)
# websockets logs every handshake header at DEBUG, the Authorization header (our token) included.
# The stream gets its own logger that never goes below INFO, whatever the app's log level.
_ws_log = logging.getLogger(__name__ + ".stream")
_ws_log.setLevel(logging.INFO)

Listener = Callable[[AccountView], None]


class RelayError(BillingError):
    """The relay answered and refused; `status` lets the guard classify it (4xx: not retried)."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.http_status = status
        if code == "stripe_unavailable":
            # The relay answered (it is healthy) and has already retried Stripe: neither count nor retry it here.
            self.failure_kind = FailureKind.BUSINESS


class RelayUnavailable(BillingError):
    code = "relay_unavailable"


class NotSignedIn(BillingError):
    code = "not_signed_in"


def _ws_url(http_url: str) -> str:
    parts = urlsplit(http_url)
    return urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, parts.path, parts.query, ""))


class BillingClient:
    def __init__(
        self,
        relay_url: str,
        *,
        guard: Guard,
        load_token: TokenLoader,
        save_token: TokenSaver,
        bus: Publisher | None = None,
        poll_interval: float = 30.0,
        request_timeout: float = 15.0,
        reconnect_max: float = 60.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not relay_url:
            raise ValueError("the billing client needs the relay's address ([billing] relay_url)")
        self.relay_url = relay_url.rstrip("/")
        self._guard = guard
        self._load = load_token
        self._save = save_token
        self._bus = bus
        self.poll_interval = poll_interval
        self._request_timeout = request_timeout
        self._reconnect_max = reconnect_max
        self._rng = rng
        self._session: aiohttp.ClientSession | None = None
        self._token: StoredToken | None = None
        self._account: AccountView | None = None
        self._last_seq = 0
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watching = False
        self.connected = False  # the websocket is open
        self.polls = 0

    def __repr__(self) -> str:
        who = self._token.email if self._token else "signed out"
        return f"<BillingClient {self.relay_url} {who}>"

    # ------------------------------------------------------------------ state

    @property
    def account(self) -> AccountView | None:
        return self._account

    @property
    def signed_in(self) -> bool:
        return self._token is not None

    @property
    def email(self) -> str | None:
        return self._token.email if self._token else None

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _set_account(self, account: AccountView) -> AccountView:
        self._account = account
        for listener in list(self._listeners):
            try:
                listener(account)
            except Exception:  # one broken view must not stop the others or the stream
                _log.exception("a billing listener failed")
        return account

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> AccountView | None:
        """Load the stored token; if there is one, fetch the account and start listening for payments."""
        self._token = await self._load()
        if self._token is None:
            return None
        account = await self.refresh()
        self._last_seq = max(self._last_seq, account.last_notice_seq)  # old notices were seen, or are history
        self._start_watching()
        return account

    async def close(self) -> None:
        self._watching = False
        tasks, self._tasks = list(self._tasks), set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.connected = False

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_watching(self) -> None:
        if self._watching:
            return
        self._watching = True
        self._spawn(self._stream_forever(), "billing-stream")
        self._spawn(self._poll_forever(), "billing-poll")

    # ------------------------------------------------------------------ HTTP

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._request_timeout))
        return self._session

    def _account_path(self, suffix: str = "") -> str:
        if self._token is None:
            raise NotSignedIn("Create a billing account first (enter your email in the billing panel).")
        account_id = self._account.id if self._account else None
        if account_id is None:
            raise NotSignedIn("Billing is still signing in; try again in a moment.")
        return f"/v1/accounts/{account_id}{suffix}"

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        idempotent: bool,
        body: dict[str, Any] | None = None,
        key: str | None = None,
        auth: bool = True,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if auth:
            if self._token is None:
                raise NotSignedIn("Create a billing account first (enter your email in the billing panel).")
            headers["Authorization"] = f"Bearer {self._token.token}"
        if key is not None:
            headers["Idempotency-Key"] = key
        url = self.relay_url + path

        async def once() -> dict[str, Any]:
            async with self._http().request(method, url, json=body, headers=headers) as resp:
                text = await resp.text()
                try:
                    data = json.loads(text) if text else {}
                except ValueError:
                    data = None
                if resp.status >= 400:
                    error = data.get("error") if isinstance(data, dict) else None
                    if isinstance(error, dict) and isinstance(error.get("message"), str):
                        raise RelayError(error["message"], status=resp.status, code=str(error.get("code", "")))
                    raise RelayError(
                        f"The billing relay answered HTTP {resp.status} to {what}; check relay_url under [billing].",
                        status=resp.status, code="http_error",
                    )
                if not isinstance(data, dict):
                    raise RelayError(f"The billing relay's answer to {what} was not JSON; check relay_url under "
                                     "[billing].", status=502, code="bad_answer")
                return data

        try:
            return await self._guard.call(once, idempotent=idempotent, what=what)
        except BillingError:
            raise
        except ResilienceError as exc:
            raise RelayUnavailable(str(exc)) from None
        except (aiohttp.ClientError, TimeoutError, OSError):
            raise RelayUnavailable(
                f"The billing relay at {self.relay_url} is not answering, so we could not {what}. "
                "Check your connection and [billing] relay_url, then try again."
            ) from None

    # ------------------------------------------------------------------ account

    async def create_account(self, email: str) -> AccountView:
        # Tried once: after a lost answer the account exists but its token is gone, and a retry gets "exists".
        data = await self._request("POST", "/v1/accounts", what="create your billing account", idempotent=False,
                                   body={"email": email}, auth=False)
        account = AccountView.from_json(data["account"])
        token = StoredToken(account.email, str(data["token"]))
        await self._save(token)
        self._token = token
        self._last_seq = account.last_notice_seq
        self._set_account(account)
        self._start_watching()
        return account

    async def sign_out(self) -> None:
        """Forget this computer's token (the account stays on the relay)."""
        await self.close()
        await self._save(None)
        self._token = None
        self._account = None

    async def refresh(self) -> AccountView:
        if self._token is None:
            raise NotSignedIn("Create a billing account first (enter your email in the billing panel).")
        if self._account is None:
            # A stored token does not say which account it belongs to: the first fetch asks the relay.
            data = await self._request("GET", "/v1/me", what="load your billing account", idempotent=True)
        else:
            data = await self._request("GET", self._account_path(), what="load your billing account", idempotent=True)
        return self._set_account(AccountView.from_json(data))

    async def ledger(self, limit: int = 100) -> list[LedgerRow]:
        data = await self._request("GET", self._account_path(f"/ledger?limit={int(limit)}"),
                                   what="load your points history", idempotent=True)
        return [LedgerRow.from_json(row) for row in data.get("entries", []) if isinstance(row, dict)]

    async def checkout_url(self, item: str) -> str:
        data = await self._request("POST", self._account_path("/checkout"), what="start the checkout",
                                   idempotent=True, body={"item": item}, key=uuid.uuid4().hex)
        return str(data["url"])

    async def portal_url(self) -> str:
        data = await self._request("POST", self._account_path("/portal"), what="open the billing portal",
                                   idempotent=True, key=uuid.uuid4().hex)
        return str(data["url"])

    async def transfer(self, to_email: str, points: int) -> AccountView:
        data = await self._request("POST", self._account_path("/transfers"), what="transfer points",
                                   idempotent=True, body={"to_email": to_email, "points": points},
                                   key=uuid.uuid4().hex)
        if self._account is not None and isinstance(data.get("balance"), int):
            self._set_account(replace(self._account, balance=data["balance"]))
        try:
            return await self.refresh()
        except BillingError:
            assert self._account is not None
            return self._account

    async def spend_sms(self, points: int = 1) -> int:
        """Spend points for an SMS alert (Pro only); returns the new balance."""
        data = await self._request("POST", self._account_path("/spend"), what="pay for an SMS alert",
                                   idempotent=True, body={"points": points, "reason": "sms_alert"},
                                   key=uuid.uuid4().hex)
        balance = int(data["balance"])
        if self._account is not None:
            self._set_account(replace(self._account, balance=balance))
        return balance

    # ------------------------------------------------------------------ payment notices

    def _accept(self, raw: list[dict[str, Any]]) -> int:
        """Handle notices not seen yet (by seq), publishing payment events; returns how many were new."""
        fresh = 0
        for notice in sorted((RelayNotice.from_json(n) for n in raw if isinstance(n, dict)), key=lambda n: n.seq):
            if notice.seq <= self._last_seq:
                continue  # already had it from the other channel
            self._last_seq = notice.seq
            fresh += 1
            if notice.kind in PAYMENT_TOPICS and self._bus is not None:
                try:
                    self._bus.publish(notice.kind, PaymentEvent.from_notice(notice), Priority.HIGH)
                except Exception:
                    _log.exception("could not publish %s", notice.kind)
            balance = notice.data.get("balance")
            if self._account is not None and isinstance(balance, int):
                self._set_account(replace(self._account, balance=balance, last_notice_seq=notice.seq))
        return fresh

    async def _after_notices(self, fresh: int) -> None:
        if fresh:
            with contextlib.suppress(BillingError):
                await self.refresh()  # the plan may have changed too

    async def poll(self) -> int:
        """Fetch notices after the last one seen; returns how many were new."""
        data = await self._request("GET", self._account_path(f"/notices?after={self._last_seq}"),
                                   what="check for payment updates", idempotent=True)
        self.polls += 1
        fresh = self._accept([n for n in data.get("notices", []) if isinstance(n, dict)])
        await self._after_notices(fresh)
        return fresh

    async def _poll_forever(self) -> None:
        while self._watching:
            await asyncio.sleep(self.poll_interval)
            if self.connected:
                continue  # the stream is live; polling is the fallback
            try:
                await self.poll()
            except BillingError as exc:
                _log.info("billing poll failed: %s", exc)
            except Exception:  # never let the fallback die quietly
                _log.exception("billing poll failed")

    async def _stream_forever(self) -> None:
        delay = 1.0
        while self._watching:
            try:
                opened = await self._stream_once()
                if opened:
                    delay = 1.0
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, BillingError, ResilienceError) as exc:
                if isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 404):
                    _log.warning("the billing relay refused the payment stream (HTTP %s); polling only",
                                 exc.response.status_code)
                    return
                _log.info("billing stream closed: %s", type(exc).__name__)
            except Exception:  # a bug must not end live updates for the session: log it and reconnect
                _log.exception("billing stream failed")
            finally:
                self.connected = False
            await asyncio.sleep(delay * (0.5 + self._rng() / 2))  # jitter: many desktops must not reconnect at once
            delay = min(self._reconnect_max, delay * 2)

    async def _stream_once(self) -> bool:
        if self._token is None or self._account is None:
            return False
        url = _ws_url(self.relay_url) + self._account_path(f"/stream?after={self._last_seq}")
        headers = {"Authorization": f"Bearer {self._token.token}"}

        async def open_stream() -> ClientConnection:
            try:
                return await connect(url, additional_headers=headers, open_timeout=10, ping_interval=20,
                                     ping_timeout=20, max_size=2**20, logger=_ws_log)
            except InvalidStatus as exc:
                # A refusal (401/404) says nothing about the relay's health: do not let it open the breaker.
                exc.failure_kind = classify_status(exc.response.status_code)  # type: ignore[attr-defined]
                raise

        ws = await self._guard.call(open_stream, idempotent=True, what="open the payment stream")
        self.connected = True
        try:
            # Catch up on anything between the last poll and the stream opening (the relay also sends its backlog).
            async for message in ws:
                try:
                    notice = json.loads(message)
                except ValueError:
                    continue
                await self._after_notices(self._accept([notice]))
        finally:
            self.connected = False
            await ws.close()
        return True
