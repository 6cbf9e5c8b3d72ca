"""What a failed outbound call means, and the guard's own errors.

`classify(exc)` answers one question for the guard: does this failure say the
*service* is unhealthy (count it, maybe retry), or did the service answer and
refuse *this request* (never count, never retry)? Getting it wrong either way is
expensive: counting a rejected order pauses trading for everyone because one
user lacked funds; not counting timeouts keeps hammering a venue that is down.

Decisions (each mapping is tested in tests/unit/test_resilience_errors.py):

* UNHEALTHY: connection refused/reset, DNS and socket errors (OSError),
  timeouts, HTTP 5xx and 408, ccxt NetworkError / RequestTimeout /
  ExchangeNotAvailable / OnMaintenance, ccxt BadResponse / NullResponse (the
  venue answered with garbage, e.g. a proxy's HTML page). Counted; retried if
  the operation is idempotent.
* RATE_LIMITED: HTTP 429 and 418, ccxt RateLimitExceeded and DDoSProtection
  (ccxt raises DDoSProtection for 418 and for Cloudflare challenges). Counted;
  with a known Retry-After the breaker opens at once for that long.
* TRANSIENT_CLIENT: ccxt InvalidNonce (and its subclass ChecksumError). Our
  request raced another one, the service is fine: not counted; an idempotent
  call is retried once.
* AUTH: ccxt AuthenticationError / PermissionDenied / AccountSuspended, HTTP
  401/403/407/451, SMTP authentication. Not counted, not retried: the user must
  fix a key, and retrying could get the key locked.
* BUSINESS: every other ccxt ExchangeError (InvalidOrder, OrderNotFound,
  InsufficientFunds, BadSymbol, BadRequest, and a *plain* ExchangeError, which
  ccxt raises for an exchange error code it has no mapping for: the exchange
  answered, so it is alive), ccxt CancelPending, other HTTP 4xx, permanent
  (5xx) SMTP replies. Not counted, not retried.
* REJECTED: the guard's own refusals (CircuitOpenError, BulkheadFullError).
  The service never saw the call: not counted, not retried.
* UNKNOWN: anything else (a KeyError in a response parser, a library error we
  do not know). Counted, so a group that keeps failing in unexplained ways
  stops being hammered and shows up as unhealthy; but NOT retried, because only
  failures known to be transient are worth the wait, and a bug will not go away
  in a second.

ccxt ordering (ccxt 4.5, see ccxt/base/errors.py): RateLimitExceeded and
DDoSProtection are *siblings* under NetworkError (not parent and child), as are
InvalidNonce, RequestTimeout and ExchangeNotAvailable; OnMaintenance subclasses
ExchangeNotAvailable; PermissionDenied subclasses AuthenticationError, which
like InsufficientFunds, InvalidOrder and BadRequest subclasses ExchangeError.
So the specific NetworkError subclasses are checked before NetworkError, and
AuthenticationError before ExchangeError.

One deliberate exception to "the class decides": when ccxt cannot parse an
error body it falls back to its HTTP-status table, which maps 400, 403, 404 and
others to ExchangeNotAvailable. Its message then has the fixed form
"<id> <METHOD> <url> <status> <reason> <body>". If such a message carries a 4xx
status (other than 408/418/429) the status wins: an unparsed "400 insufficient
balance" is a refused request, not an outage, and must not pause trading.

Other layers may tag their own exceptions with a `failure_kind` attribute
(a FailureKind), which wins over everything; and an exception the rules do not
recognise is classified by its explicit cause (`raise X from ccxt_error`), so a
venue may wrap ccxt errors in its own types without hiding their meaning.
"""

from __future__ import annotations

import email.utils
import enum
import re
import smtplib
import sys
import time
from typing import Any

import aiohttp

__all__ = [
    "BulkheadFullError",
    "CallTimeoutError",
    "CircuitOpenError",
    "FailureKind",
    "ResilienceError",
    "classify",
    "classify_status",
    "describe_error",
    "group_display_name",
    "retry_after_seconds",
    "scrub",
]


class FailureKind(enum.Enum):
    UNHEALTHY = "unhealthy"
    RATE_LIMITED = "rate_limited"
    TRANSIENT_CLIENT = "transient_client"
    AUTH = "auth"
    BUSINESS = "business"
    REJECTED = "rejected"
    UNKNOWN = "unknown"

    @property
    def counts(self) -> bool:
        """Does this failure count toward opening the circuit breaker?"""
        return self in (FailureKind.UNHEALTHY, FailureKind.RATE_LIMITED, FailureKind.UNKNOWN)

    @property
    def retryable(self) -> bool:
        """May an idempotent call be retried after it? (TRANSIENT_CLIENT: once only; see retry.py.)"""
        return self in (FailureKind.UNHEALTHY, FailureKind.RATE_LIMITED, FailureKind.TRANSIENT_CLIENT)


# --------------------------------------------------------------------------- the guard's own errors


class ResilienceError(Exception):
    """Raised by a guard itself; `str(err)` is a sentence for the user."""

    failure_kind: FailureKind = FailureKind.REJECTED


class CircuitOpenError(ResilienceError):
    """The group's breaker is open (or half-open with all probes busy): the call was not made."""

    def __init__(self, message: str, *, group: str, retry_at: float | None, failures: int, last_error: str) -> None:
        super().__init__(message)
        self.group = group
        self.retry_at = retry_at  # wall-clock epoch seconds when probes are let through; None while half-open
        self.failures = failures
        self.last_error = last_error


class BulkheadFullError(ResilienceError):
    """Every slot of the group stayed busy for the whole queue timeout: the call was not made."""

    def __init__(self, message: str, *, group: str) -> None:
        super().__init__(message)
        self.group = group


class CallTimeoutError(ResilienceError, TimeoutError):
    """The call was started but no answer came within the call timeout.

    A TimeoutError, so code that handles timeouts generically still works. For a
    non-idempotent call (an order) the outcome is unknown: reconcile, never resend.
    """

    failure_kind = FailureKind.UNHEALTHY

    def __init__(self, message: str, *, group: str, timeout: float) -> None:
        super().__init__(message)
        self.group = group
        self.timeout = timeout


# --------------------------------------------------------------------------- classification


def classify_status(status: int) -> FailureKind:
    """The meaning of an HTTP status of a failed response."""
    if status in (429, 418):
        return FailureKind.RATE_LIMITED
    if status == 408 or 500 <= status <= 599:
        return FailureKind.UNHEALTHY
    if status in (401, 403, 407, 451):
        return FailureKind.AUTH
    if 400 <= status <= 499:
        return FailureKind.BUSINESS
    return FailureKind.UNKNOWN


# ccxt's fallback message: f"{id} {method} {url} {status} {reason} {body}" (Exchange.handle_http_status_code).
_CCXT_HTTP_MESSAGE = re.compile(r"^\S+ (?:GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS) \S+ (\d{3})\b")


def _ccxt_fallback_status(exc: BaseException) -> int | None:
    match = _CCXT_HTTP_MESSAGE.match(str(exc))
    return int(match.group(1)) if match else None


def _is_ccxt(exc: BaseException) -> bool:
    """A ccxt error, without importing ccxt (half a second at start-up) when none can exist yet."""
    ccxt = sys.modules.get("ccxt")
    return ccxt is not None and isinstance(exc, ccxt.BaseError)


def _classify_ccxt(exc: BaseException) -> FailureKind:
    import ccxt  # already imported: _is_ccxt found it in sys.modules

    # Most specific first: the ccxt hierarchy nests these (see the module docstring).
    if isinstance(exc, ccxt.ExchangeNotAvailable) and not isinstance(exc, ccxt.OnMaintenance):
        status = _ccxt_fallback_status(exc)
        if status is not None and 400 <= status <= 499:
            kind = classify_status(status)
            if kind in (FailureKind.BUSINESS, FailureKind.AUTH):
                return kind
    if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
        return FailureKind.RATE_LIMITED
    if isinstance(exc, ccxt.InvalidNonce):
        return FailureKind.TRANSIENT_CLIENT
    if isinstance(exc, ccxt.NetworkError):  # RequestTimeout, ExchangeNotAvailable, OnMaintenance, plain
        return FailureKind.UNHEALTHY
    if isinstance(exc, ccxt.CancelPending):
        return FailureKind.BUSINESS  # the venue answered: the cancel is under way
    if isinstance(exc, ccxt.OperationFailed):  # BadResponse, NullResponse
        return FailureKind.UNHEALTHY
    if isinstance(exc, ccxt.AuthenticationError):  # PermissionDenied, AccountSuspended, AccountNotEnabled
        return FailureKind.AUTH
    # Every other ExchangeError (the venue answered and refused), plus client-side
    # ccxt errors such as UnsubscribeError.
    return FailureKind.BUSINESS


def _classify_smtp(exc: smtplib.SMTPException) -> FailureKind:
    # smtplib's errors are OSErrors, so they must be looked at before OSError.
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return FailureKind.AUTH
    if isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError)):
        return FailureKind.UNHEALTHY
    if isinstance(exc, smtplib.SMTPResponseException):
        # SMTP 4xx replies are temporary ("try again later"), 5xx are permanent.
        return FailureKind.UNHEALTHY if 400 <= exc.smtp_code <= 499 else FailureKind.BUSINESS
    if isinstance(exc, (smtplib.SMTPRecipientsRefused, smtplib.SMTPNotSupportedError)):
        return FailureKind.BUSINESS
    return FailureKind.UNKNOWN


def _http_status_attr(exc: BaseException) -> int | None:
    for name in ("status", "status_code"):
        value = getattr(exc, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def _classify_one(exc: BaseException) -> FailureKind:
    tagged = getattr(exc, "failure_kind", None)
    if isinstance(tagged, FailureKind):
        return tagged
    if _is_ccxt(exc):
        return _classify_ccxt(exc)
    if isinstance(exc, aiohttp.ClientResponseError):
        return classify_status(exc.status) if exc.status else FailureKind.UNKNOWN
    if isinstance(exc, smtplib.SMTPException):
        return _classify_smtp(exc)
    # TimeoutError is asyncio.TimeoutError since 3.11; aiohttp's ServerTimeoutError is one too.
    if isinstance(exc, (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        return FailureKind.UNHEALTHY
    if isinstance(exc, OSError):  # ConnectionRefused/Reset, socket.gaierror (DNS), ssl errors
        return FailureKind.UNHEALTHY
    status = _http_status_attr(exc)  # other HTTP clients' response errors
    if status is not None:
        return classify_status(status)
    return FailureKind.UNKNOWN


def classify(exc: BaseException) -> FailureKind:
    """What `exc`, raised by an outbound call, says about the service (see the module docstring)."""
    kind = _classify_one(exc)
    seen = {id(exc)}
    cause = exc.__cause__
    # Only the explicit cause: __context__ may be an unrelated error handled earlier.
    while kind is FailureKind.UNKNOWN and cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        kind = _classify_one(cause)
        cause = cause.__cause__
    return kind


# --------------------------------------------------------------------------- Retry-After

_RETRY_AFTER_TEXT = re.compile(
    r"retry[-_ ]?after\W{0,3}(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|secs?|seconds?)?", re.IGNORECASE
)
_BANNED_UNTIL = re.compile(r"banned until (\d{13})")  # Binance 418: "IP banned until 1602256541853."


def _parse_retry_after_header(value: str, now: float) -> float | None:
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:  # RFC 9110 also allows an HTTP-date
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() - now


def _headers_of(exc: BaseException) -> Any:
    headers = getattr(exc, "headers", None)
    if headers is None:
        response = getattr(exc, "response", None)  # other HTTP clients attach the response
        headers = getattr(response, "headers", None)
    return headers


def retry_after_seconds(exc: BaseException, *, now: float | None = None) -> float | None:
    """How long the service asked us to wait, in seconds, or None if it did not say.

    Looked for, in order: a numeric `retry_after` attribute (seconds; venues can
    copy it from `exchange.last_response_headers`, which ccxt does not put on
    its exceptions), a `Retry-After` header on `exc.headers` (aiohttp's
    ClientResponseError) or `exc.response.headers`, then the message text
    ("retry after 5s", "Retry-After: 2000ms", Binance's "banned until <epoch
    ms>"). A bare number in a message is seconds. `now` is the wall clock
    (epoch seconds) for HTTP-dates and ban times. Values of zero or less mean
    "not said".
    """
    now = time.time() if now is None else now
    seconds: float | None = None
    attr = getattr(exc, "retry_after", None)
    if isinstance(attr, (int, float)) and not isinstance(attr, bool):
        seconds = float(attr)
    if seconds is None:
        headers = _headers_of(exc)
        if headers is not None:
            try:
                value = headers.get("Retry-After")
                if value is None:
                    value = headers.get("retry-after")  # a plain dict is case-sensitive
            except (AttributeError, TypeError):
                value = None
            if value is not None:
                seconds = _parse_retry_after_header(str(value), now)
    if seconds is None:
        text = str(exc)
        match = _RETRY_AFTER_TEXT.search(text)
        if match:
            seconds = float(match.group(1))
            unit = (match.group(2) or "s").lower()
            if unit.startswith("m"):
                seconds /= 1000.0
        else:
            ban = _BANNED_UNTIL.search(text)
            if ban:
                seconds = int(ban.group(1)) / 1000.0 - now
    if seconds is None or seconds != seconds or seconds <= 0:  # NaN check without math
        return None
    return seconds


# --------------------------------------------------------------------------- words for people

_SECRET_WORDS = r"[\w.-]*(?:key|secret|signature|token|password|passphrase|passwd|pwd)[\w.-]*"
# name=value, name: value, "name": "value" -- the value ends at a separator or quote.
_SECRET_PAIR = re.compile(
    rf"""(?P<name>{_SECRET_WORDS})(?P<sep>["']?\s*[=:]\s*["']?)(?P<value>[^\s&"',;}}\]]+)""",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_URL_QUERY = re.compile(r"(?P<url>[a-z][a-z0-9+.-]*://[^\s?#\"'<>]+)\?[^\s\"'<>]*", re.IGNORECASE)
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@\"']+@", re.IGNORECASE)


def scrub(text: str, limit: int = 300) -> str:
    """`text` without URL query strings, credentials in URLs, or values of key/secret/
    signature/token/password fields; at most `limit` characters.

    Query strings go entirely: signed requests put the signature and often the
    API key there, and nothing else in them helps a user.
    """
    text = _URL_QUERY.sub(r"\g<url>", text)
    text = _USERINFO.sub(r"\g<scheme>", text)
    text = _BEARER.sub(r"\1 ***", text)
    text = _SECRET_PAIR.sub(r"\g<name>\g<sep>***", text)
    text = " ".join(text.split())  # tracebacks and HTML bodies span lines; a sentence does not
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def describe_error(exc: BaseException, limit: int = 200) -> str:
    """A short, secret-free sentence naming what went wrong, for health and logs."""
    detail = scrub(str(exc), limit)
    name = type(exc).__name__
    if not detail:
        return f"{name}."
    sentence = f"{name}: {detail}"
    if len(sentence) > limit:
        sentence = sentence[: limit - 1].rstrip() + "…"
    return sentence if sentence.endswith((".", "…", "!", "?")) else sentence + "."


_NAMES = {
    "binance": "Binance",
    "gate": "Gate.io",
    "gateio": "Gate.io",
    "mexc": "MEXC",
    "mt5": "MetaTrader 5",
    "sim": "The simulator",
    "coinmarketcap": "CoinMarketCap",
    "yahoo": "Yahoo Finance",
    "alphavantage": "Alpha Vantage",
    "polygon": "Polygon",
    "smtp": "The email server",
    "discord": "Discord",
    "relay": "The billing relay",
}
_ACTIVITIES = {
    "exchange": "trading",
    "marketdata": "market data",
    "smtp": "email notifications",
    "discord": "Discord notifications",
    "relay": "payments",
    "notify": "notifications",
}


def group_display_name(group: str) -> tuple[str, str]:
    """(service name, what is paused) for an endpoint group, e.g. ("Binance", "trading")."""
    kind, _, name = group.partition(":")
    key = (name or kind).lower()
    display = _NAMES.get(key) or (key[:1].upper() + key[1:] if key else group)
    return display, _ACTIVITIES.get(kind.lower(), "requests")
