"""Failure classification, Retry-After extraction and scrubbing (app.resilience.errors)."""

from __future__ import annotations

import asyncio
import email.utils
import smtplib
import socket

import aiohttp
import ccxt
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from app.resilience.errors import (
    BulkheadFullError,
    CallTimeoutError,
    CircuitOpenError,
    FailureKind,
    classify,
    describe_error,
    group_display_name,
    retry_after_seconds,
    scrub,
)

U = FailureKind.UNHEALTHY
RL = FailureKind.RATE_LIMITED
TC = FailureKind.TRANSIENT_CLIENT
AUTH = FailureKind.AUTH
BIZ = FailureKind.BUSINESS
REJ = FailureKind.REJECTED
UNK = FailureKind.UNKNOWN


def response_error(status: int, headers: dict[str, str] | None = None, url: str = "https://api.example.com/v1/x") -> aiohttp.ClientResponseError:
    info = aiohttp.RequestInfo(URL(url), "GET", CIMultiDictProxy(CIMultiDict()), URL(url))
    return aiohttp.ClientResponseError(
        info, (), status=status, message="HTTP error", headers=CIMultiDictProxy(CIMultiDict(headers or {}))
    )


# ----------------------------------------------------------------------------- ccxt


def test_ccxt_hierarchy_is_what_the_check_order_assumes() -> None:
    # If ccxt reshuffles these, classify's order must be reviewed: fail loudly here.
    assert issubclass(ccxt.RateLimitExceeded, ccxt.NetworkError)
    assert issubclass(ccxt.DDoSProtection, ccxt.NetworkError)
    assert issubclass(ccxt.InvalidNonce, ccxt.NetworkError)
    assert issubclass(ccxt.RequestTimeout, ccxt.NetworkError)
    assert issubclass(ccxt.OnMaintenance, ccxt.ExchangeNotAvailable)
    assert issubclass(ccxt.ExchangeNotAvailable, ccxt.NetworkError)
    assert issubclass(ccxt.PermissionDenied, ccxt.AuthenticationError)
    assert issubclass(ccxt.AuthenticationError, ccxt.ExchangeError)
    assert issubclass(ccxt.OrderNotFound, ccxt.InvalidOrder)
    assert issubclass(ccxt.BadSymbol, ccxt.BadRequest)
    assert not issubclass(ccxt.NetworkError, ccxt.ExchangeError)


@pytest.mark.parametrize(
    ("cls", "kind"),
    [
        (ccxt.NetworkError, U),
        (ccxt.DDoSProtection, RL),
        (ccxt.RateLimitExceeded, RL),
        (ccxt.RequestTimeout, U),
        (ccxt.ExchangeNotAvailable, U),
        (ccxt.OnMaintenance, U),
        (ccxt.InvalidNonce, TC),
        (ccxt.ChecksumError, TC),
        (ccxt.AuthenticationError, AUTH),
        (ccxt.PermissionDenied, AUTH),
        (ccxt.AccountSuspended, AUTH),
        (ccxt.AccountNotEnabled, AUTH),
        (ccxt.InvalidOrder, BIZ),
        (ccxt.OrderNotFound, BIZ),
        (ccxt.DuplicateOrderId, BIZ),
        (ccxt.InsufficientFunds, BIZ),
        (ccxt.BadSymbol, BIZ),
        (ccxt.BadRequest, BIZ),
        (ccxt.ArgumentsRequired, BIZ),
        (ccxt.NotSupported, BIZ),
        (ccxt.OperationRejected, BIZ),
        (ccxt.MarketClosed, BIZ),
        (ccxt.ExchangeError, BIZ),
        (ccxt.BadResponse, U),
        (ccxt.NullResponse, U),
        (ccxt.CancelPending, BIZ),
        (ccxt.OperationFailed, U),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else v.name,
)
def test_each_ccxt_error_class_maps_as_documented(cls: type[Exception], kind: FailureKind) -> None:
    assert classify(cls("binance something went wrong")) is kind


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        # ccxt's fallback for an unparsed error body: the HTTP status wins over the class.
        ('binance POST https://api.binance.com/api/v3/order 400 Bad Request {"code":-9999,"msg":"balance"}', BIZ),
        ("binance GET https://api.binance.com/api/v3/ticker 404 Not Found ", BIZ),
        ("binance GET https://api.binance.com/api/v3/account 403 Forbidden <html>", AUTH),
        ("binance GET https://api.binance.com/api/v3/ticker 503 Service Unavailable ", U),
        ("binance GET https://api.binance.com/api/v3/ticker 502 Bad Gateway ", U),
        ("binance is down for a moment", U),  # no status in the message: the class decides
    ],
)
def test_ccxt_http_fallback_status_decides_for_exchange_not_available(message: str, kind: FailureKind) -> None:
    assert classify(ccxt.ExchangeNotAvailable(message)) is kind


def test_on_maintenance_stays_unhealthy_whatever_its_message() -> None:
    assert classify(ccxt.OnMaintenance("binance GET https://x/y 400 Bad Request maintenance")) is U


# ----------------------------------------------------------------------------- Python and aiohttp


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        asyncio.TimeoutError(),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        BrokenPipeError(),
        OSError("Network is unreachable"),
        socket.gaierror(-2, "Name or service not known"),
        aiohttp.ClientConnectionError("boom"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ServerTimeoutError("read timeout"),
        aiohttp.ClientPayloadError("truncated body"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_failures_are_unhealthy(exc: BaseException) -> None:
    assert classify(exc) is U


@pytest.mark.parametrize(
    ("status", "kind"),
    [(500, U), (502, U), (503, U), (504, U), (408, U), (429, RL), (418, RL),
     (400, BIZ), (404, BIZ), (409, BIZ), (422, BIZ), (401, AUTH), (403, AUTH)],
)
def test_http_status_of_aiohttp_response_errors(status: int, kind: FailureKind) -> None:
    assert classify(response_error(status)) is kind


def test_other_clients_status_attribute_is_used() -> None:
    class HttpError(Exception):
        def __init__(self, status_code: int) -> None:
            super().__init__(f"HTTP {status_code}")
            self.status_code = status_code

    assert classify(HttpError(503)) is U
    assert classify(HttpError(429)) is RL
    assert classify(HttpError(400)) is BIZ


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), AUTH),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), U),
        (smtplib.SMTPConnectError(421, b"try later"), U),
        (smtplib.SMTPResponseException(451, b"local error"), U),
        (smtplib.SMTPDataError(550, b"mailbox unavailable"), BIZ),
        (smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"no such user")}), BIZ),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v.name,
)
def test_smtp_errors_are_not_taken_for_socket_errors(exc: Exception, kind: FailureKind) -> None:
    assert isinstance(exc, OSError)  # why smtplib is checked before OSError
    assert classify(exc) is kind


def test_the_guards_own_errors() -> None:
    assert classify(CircuitOpenError("x", group="g", retry_at=None, failures=5, last_error="")) is REJ
    assert classify(BulkheadFullError("x", group="g")) is REJ
    timeout = CallTimeoutError("x", group="g", timeout=1.0)
    assert isinstance(timeout, TimeoutError)
    assert classify(timeout) is U


def test_unknown_errors_are_unknown_and_count_but_do_not_retry() -> None:
    assert classify(KeyError("price")) is UNK
    assert classify(ValueError("bad json")) is UNK
    assert UNK.counts and not UNK.retryable


def test_kind_policies() -> None:
    assert {k for k in FailureKind if k.counts} == {U, RL, UNK}
    assert {k for k in FailureKind if k.retryable} == {U, RL, TC}


def test_explicit_cause_is_classified_when_the_wrapper_is_unknown() -> None:
    class VenueError(Exception):
        pass

    try:
        try:
            raise ccxt.InsufficientFunds("binance Account has insufficient balance")
        except ccxt.BaseError as inner:
            raise VenueError("Not enough USDT to buy 1 BTC.") from inner
    except VenueError as outer:
        assert classify(outer) is BIZ

    # __context__ (an error merely handled nearby) is not a cause.
    try:
        try:
            raise ccxt.RequestTimeout("slow")
        except ccxt.BaseError:
            raise VenueError("unrelated")  # noqa: B904 - deliberately no "from"
    except VenueError as outer:
        assert classify(outer) is UNK


def test_failure_kind_attribute_wins() -> None:
    class Paused(Exception):
        failure_kind = FailureKind.AUTH

    assert classify(Paused()) is AUTH


# ----------------------------------------------------------------------------- Retry-After


def test_retry_after_from_attribute() -> None:
    exc = ccxt.RateLimitExceeded("binance 429")
    exc.retry_after = 12  # type: ignore[attr-defined]
    assert retry_after_seconds(exc) == 12.0


def test_retry_after_from_aiohttp_headers_seconds_and_http_date() -> None:
    assert retry_after_seconds(response_error(429, {"Retry-After": "60"})) == 60.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert retry_after_seconds(response_error(503, {"retry-after": date}), now=now) == pytest.approx(90.0)


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("binance 429 Too Many Requests, retry after 5s", 5.0),
        ("kucoin Retry-After: 2000ms", 2.0),
        ('{"error": "rate limited", "retry_after": 1.5}', 1.5),
    ],
)
def test_retry_after_from_message(message: str, seconds: float) -> None:
    assert retry_after_seconds(ccxt.RateLimitExceeded(message)) == pytest.approx(seconds)


def test_retry_after_from_binance_ban_message() -> None:
    exc = ccxt.DDoSProtection(
        'binance 418 {"code":-1003,"msg":"Way too much request weight used; IP banned until 1700000120000. '
        'Please use WebSocket Streams for live updates to avoid bans."}'
    )
    assert retry_after_seconds(exc, now=1_700_000_000.0) == pytest.approx(120.0)


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.RateLimitExceeded("binance 429 Too Many Requests"),
        response_error(429),
        response_error(429, {"Retry-After": "0"}),
        response_error(429, {"Retry-After": "soon"}),
        ccxt.DDoSProtection("IP banned until 1600000000000."),  # in the past
    ],
)
def test_no_usable_retry_after_is_none(exc: Exception) -> None:
    assert retry_after_seconds(exc, now=1_700_000_000.0) is None


# ----------------------------------------------------------------------------- words


def test_scrub_removes_query_strings_and_secret_values() -> None:
    text = (
        "binance GET https://api.binance.com/api/v3/account?timestamp=1&signature=abc&apiKey=XYZ 500 "
        'signature=abc&apiKey=XYZ {"secret": "s3cr3t", "access_token":"tok"} password: hunter2 '
        "Authorization: Bearer eyJhbGciOi.x.y https://user:pw@relay.example.com/hook"
    )
    out = scrub(text)
    for leaked in ("abc", "XYZ", "s3cr3t", "tok\"", "hunter2", "eyJhbGciOi", "timestamp=", "user:pw"):
        assert leaked not in out, leaked
    assert "https://api.binance.com/api/v3/account" in out
    assert "relay.example.com/hook" in out


def test_scrub_keeps_harmless_text_and_limits_length() -> None:
    assert scrub("Invalid API-key, IP, or permissions for action.") == "Invalid API-key, IP, or permissions for action."
    assert len(scrub("x" * 1000, limit=50)) == 50


def test_describe_error_is_a_short_scrubbed_sentence() -> None:
    out = describe_error(ccxt.RequestTimeout("binance GET https://api.binance.com/x?apiKey=XYZ request timed out"))
    assert out == "RequestTimeout: binance GET https://api.binance.com/x request timed out."
    assert describe_error(TimeoutError()) == "TimeoutError."
    assert len(describe_error(ValueError("y" * 1000))) <= 200


def test_group_display_names() -> None:
    assert group_display_name("exchange:binance") == ("Binance", "trading")
    assert group_display_name("marketdata:coinmarketcap") == ("CoinMarketCap", "market data")
    assert group_display_name("smtp") == ("The email server", "email notifications")
    assert group_display_name("exchange:kraken") == ("Kraken", "trading")
