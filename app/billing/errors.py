"""Billing's refusals: each one a sentence a user can act on, with a code and an HTTP status.

The relay turns a `BillingError` into `{"error": {"message", "code"}}` with its
status; the desktop client turns that body back into a `RelayError`. Messages
never hold a token, a key or a signature.
"""

from __future__ import annotations

__all__ = [
    "AccountExists",
    "BillingError",
    "IllegalTransition",
    "InsufficientPoints",
    "InvalidRequest",
    "NotFound",
    "PaymentProviderUnavailable",
    "Unauthorised",
]


class BillingError(Exception):
    """A refusal or failure the user should read; `str(err)` is the sentence."""

    code = "billing_error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class InvalidRequest(BillingError):
    code = "invalid_request"
    http_status = 400


class Unauthorised(BillingError):
    code = "unauthorised"
    http_status = 401


class NotFound(BillingError):
    code = "not_found"
    http_status = 404


class AccountExists(BillingError):
    code = "account_exists"
    http_status = 409


class InsufficientPoints(BillingError):
    code = "insufficient_points"
    http_status = 409


class PaymentProviderUnavailable(BillingError):
    code = "stripe_unavailable"
    http_status = 502


class IllegalTransition(RuntimeError):
    """A payment was asked to move where its state machine has no edge: a bug, never user input."""
