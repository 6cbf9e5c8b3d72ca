"""ccxt's exceptions as the application's `VenueError`s, with sentences a user can act on.

ccxt puts the exchange's raw response, and for network errors the request URL,
into its messages. A signed request's URL carries the signature and sometimes the
key in its query string, so messages are scrubbed (`app.resilience.errors.scrub`)
before they go anywhere.
"""

from __future__ import annotations

import json

import ccxt

from app.resilience.errors import ResilienceError, scrub

from app.venues.base import (
    InsufficientFunds,
    OrderNotFound,
    OrderRejected,
    UnknownSymbol,
    VenueAuthError,
    VenueError,
    VenueUnavailable,
)

def exchange_detail(exc: BaseException, exchange_id: str) -> str:
    """The exchange's own words, without ccxt's 'binance ' prefix and without secrets."""
    text = str(exc)
    if text.startswith(exchange_id + " "):
        text = text[len(exchange_id) + 1 :]
    start = text.find("{")
    if start >= 0:  # exchanges answer {"code": -2010, "msg": "..."} (Gate: "label"/"message"): keep the words
        try:
            body = json.loads(text[start:])
            words = body.get("msg") or body.get("message") or body.get("label") if isinstance(body, dict) else None
            if words:
                code = body.get("code")
                text = f"{words} (code {code})" if code not in (None, "") else str(words)
        except ValueError:
            pass
    return scrub(text.strip()) or type(exc).__name__


def to_venue_error(exc: BaseException, title: str, exchange_id: str) -> VenueError:
    """Map one ccxt exception (order of checks matters: ccxt's classes inherit from each other)."""
    if isinstance(exc, VenueError):
        return exc
    if isinstance(exc, ResilienceError):
        return VenueUnavailable(str(exc))  # the guard's own refusal is already a sentence for the user
    detail = exchange_detail(exc, exchange_id)
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientFunds(f"{title} says the balance is too low for this order ({detail}).")
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFound(f"{title} has no such order ({detail}).")
    if isinstance(exc, ccxt.InvalidOrder):
        return OrderRejected(f"{title} rejected the order: {detail}")
    if isinstance(exc, ccxt.BadSymbol):
        return UnknownSymbol(f"{title} does not list that symbol ({detail}).")
    if isinstance(exc, (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended)):
        return VenueAuthError(
            f"{title} refused the API key ({detail}). Check the key in Settings → API keys, "
            "that it allows spot trading, and that your IP is whitelisted if you set one."
        )
    if isinstance(exc, ccxt.RateLimitExceeded) or isinstance(exc, ccxt.DDoSProtection):
        return VenueUnavailable(f"{title} is limiting our requests; waiting before trying again ({detail}).")
    if isinstance(exc, ccxt.OnMaintenance):
        return VenueUnavailable(f"{title} is under maintenance; try again later.")
    if isinstance(exc, (ccxt.RequestTimeout, TimeoutError)):
        return VenueUnavailable(f"{title} did not answer in time; try again in a moment.")
    if isinstance(exc, (ccxt.NetworkError, ccxt.ExchangeNotAvailable, OSError)):
        return VenueUnavailable(f"{title} cannot be reached ({detail}); check your connection. Retrying automatically.")
    if isinstance(exc, ccxt.ExchangeError):
        return VenueError(f"{title} refused the request: {detail}")
    if isinstance(exc, ccxt.OperationFailed):  # e.g. Binance's -1001 on a 500: the exchange failed, not us
        return VenueUnavailable(f"{title} failed to handle the request ({detail}); try again in a moment.")
    return VenueError(f"{title}: unexpected error ({type(exc).__name__}: {detail}).")
