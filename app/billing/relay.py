"""The billing relay's HTTP and websocket endpoints (aiohttp), and `RelayServer` to run them.

    POST /v1/accounts                          {"email"} -> 201 {"account", "token"}
    GET  /v1/me                                the token's own account (a stored token does not name its id)
    GET  /v1/accounts/{id}                     plan, balance, entitlements
    GET  /v1/accounts/{id}/ledger?limit&before the account's ledger entries, newest first
    GET  /v1/accounts/{id}/notices?after=SEQ   payment notices after SEQ (the polling fallback)
    GET  /v1/accounts/{id}/stream?after=SEQ    websocket: the same notices, pushed live
    POST /v1/accounts/{id}/checkout            {"item"} -> {"url", "payment"}   (Idempotency-Key)
    POST /v1/accounts/{id}/portal              -> {"url"} of a Stripe billing portal session
    POST /v1/accounts/{id}/transfers           {"to_email", "points"} -> {"balance"}   (Idempotency-Key)
    POST /v1/accounts/{id}/spend               {"points", "reason": "sms_alert"} -> {"balance"} (Idempotency-Key)
    POST /v1/stripe/webhook                    Stripe's events, signature-checked on the raw body
    GET  /healthz                              200 once the database is open

Every /v1/accounts/{id} route needs `Authorization: Bearer <account token>`;
a token of another account gets 404, exactly like an account that does not
exist, so tokens cannot be used to discover accounts. Errors are JSON:
`{"error": {"message": <a sentence>, "code": <a word>}}`.

The websocket is aiohttp's, on the relay's own port (the desktop connects with
the `websockets` library): one address, one TLS certificate and one proxy rule
serve both, the desktop needs only `relay_url`, and the stream is authorised
by the same token check as every other route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from app.billing.errors import BillingError, InvalidRequest, NotFound
from app.billing.repository import Account
from app.billing.service import RelayConfig, RelayService, idempotency_key

__all__ = ["RelayServer", "build_app"]

_log = logging.getLogger(__name__)

SERVICE: web.AppKey[RelayService] = web.AppKey("billing_service", RelayService)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Meridian Terminal</title></head>
<body style="font-family: sans-serif; margin: 3em"><h1>{title}</h1><p>{text}</p></body></html>"""


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "code": code}}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BillingError as exc:
        return _error(exc.http_status, exc.code, str(exc))
    except web.HTTPException:
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        _log.exception("the relay failed on %s %s", request.method, request.path)
        return _error(500, "internal", "The billing relay had an internal error; try again in a minute.")


def _service(request: web.Request) -> RelayService:
    return request.app[SERVICE]


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _owner(request: web.Request) -> Account:
    account = await _service(request).authenticate(_bearer(request))
    if request.match_info.get("account_id") != account.id:
        raise NotFound("No such account.")  # the same answer as a missing account: nothing to learn
    return account


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("The request body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def _int_query(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"The '{name}' parameter must be a whole number.") from None


# ---------------------------------------------------------------------------- handlers


async def healthz(request: web.Request) -> web.Response:
    ready = _service(request).ready
    return web.json_response({"status": "ok" if ready else "starting"}, status=200 if ready else 503)


async def create_account(request: web.Request) -> web.Response:
    body = await _body(request)
    view, token = await _service(request).create_account(body.get("email"))
    return web.json_response({"account": view, "token": token}, status=201)


async def get_account(request: web.Request) -> web.Response:
    return web.json_response(await _service(request).view(await _owner(request)))


async def get_me(request: web.Request) -> web.Response:
    service = _service(request)
    return web.json_response(await service.view(await service.authenticate(_bearer(request))))


async def get_ledger(request: web.Request) -> web.Response:
    account = await _owner(request)
    limit = _int_query(request, "limit", 50) or 50
    return web.json_response(await _service(request).ledger(account, limit, _int_query(request, "before", None)))


async def get_notices(request: web.Request) -> web.Response:
    account = await _owner(request)
    after = _int_query(request, "after", 0) or 0
    notices = await _service(request).notices(account, after)
    return web.json_response({"notices": [n.as_json() for n in notices]})


async def post_checkout(request: web.Request) -> web.Response:
    account = await _owner(request)
    body = await _body(request)
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    return web.json_response(await _service(request).checkout(account, body.get("item"), key))


async def post_portal(request: web.Request) -> web.Response:
    account = await _owner(request)
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    return web.json_response(await _service(request).portal(account, key))


async def post_transfer(request: web.Request) -> web.Response:
    account = await _owner(request)
    body = await _body(request)
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    return web.json_response(await _service(request).transfer(account, body.get("to_email"), body.get("points"), key))


async def post_spend(request: web.Request) -> web.Response:
    account = await _owner(request)
    body = await _body(request)
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    return web.json_response(await _service(request).spend(account, body.get("points"), body.get("reason"), key))


async def stripe_webhook(request: web.Request) -> web.Response:
    body = await request.read()  # the raw bytes: the signature covers them exactly
    await _service(request).webhook(body, request.headers.get("Stripe-Signature"))
    return web.json_response({"received": True})


async def stream(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    account = await _owner(request)
    after = _int_query(request, "after", 0) or 0
    ws = web.WebSocketResponse(heartbeat=25.0)
    await ws.prepare(request)
    listener = service.hub.listen(account.id)  # before reading the backlog, so nothing falls in between

    async def drain() -> None:
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                break

    reader = asyncio.create_task(drain())
    try:
        last = after
        while True:  # the backlog first, page by page, then live notices
            page = await service.notices(account, last, limit=200)
            for notice in page:
                await ws.send_json(notice.as_json())
                last = notice.seq
            if len(page) < 200:
                break
        while not ws.closed:
            getter = asyncio.ensure_future(listener.queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            notice = getter.result()
            if notice is None or listener.overflowed:
                break
            if notice.seq > last:
                await ws.send_json(notice.as_json())
                last = notice.seq
    except ConnectionResetError:
        pass
    finally:
        service.hub.forget(listener)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await ws.close()
    return ws


def _page(title: str, text: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=_PAGE.format(title=title, text=text), content_type="text/html")

    return handler


def build_app(service: RelayService) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=1024 * 1024)
    app[SERVICE] = service
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/accounts", create_account)
    app.router.add_get("/v1/me", get_me)
    app.router.add_get("/v1/accounts/{account_id}", get_account)
    app.router.add_get("/v1/accounts/{account_id}/ledger", get_ledger)
    app.router.add_get("/v1/accounts/{account_id}/notices", get_notices)
    app.router.add_get("/v1/accounts/{account_id}/stream", stream)
    app.router.add_post("/v1/accounts/{account_id}/checkout", post_checkout)
    app.router.add_post("/v1/accounts/{account_id}/portal", post_portal)
    app.router.add_post("/v1/accounts/{account_id}/transfers", post_transfer)
    app.router.add_post("/v1/accounts/{account_id}/spend", post_spend)
    app.router.add_post("/v1/stripe/webhook", stripe_webhook)
    app.router.add_get("/billing/done", _page(
        "Payment received", "Thank you. Meridian Terminal shows your plan and points in a moment; you can close this tab."))
    app.router.add_get("/billing/cancelled", _page(
        "Payment cancelled", "Nothing was charged. You can close this tab and return to Meridian Terminal."))
    app.router.add_get("/billing/portal-done", _page(
        "Billing updated", "You can close this tab and return to Meridian Terminal."))

    async def on_shutdown(app: web.Application) -> None:
        service.hub.close_all()  # open streams end now instead of holding the shutdown

    app.on_shutdown.append(on_shutdown)
    return app


class RelayServer:
    """The relay on host:port: `async with RelayServer(config) as relay: relay.url`."""

    def __init__(self, config: RelayConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.service = RelayService(config)
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"<RelayServer {self.url if self._runner else 'stopped'}>"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await self.service.open()
        runner = web.AppRunner(build_app(self.service), shutdown_timeout=5.0)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self.service.close()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        if not self.service.public_url:
            self.service.public_url = self.url
        self.service.reconciler.start()
        _log.info("billing relay listening on %s", self.url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        await self.service.reconciler.stop()
        if runner is not None:
            await runner.cleanup()
        await self.service.close()

    async def reconcile_once(self) -> int:
        return await self.service.reconciler.run_once()

    async def __aenter__(self) -> RelayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
