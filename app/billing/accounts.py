"""Accounts: emails, tokens, and what an account may see of itself (plan, balance, entitlements).

A token is 32 random bytes; the relay stores only its SHA-256, so a copy of the
relay's database does not let anyone act as an account. The desktop keeps the
token in the OS keyring. `email_problem` is shared with the desktop's transfer
form so both sides agree on what an email looks like.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Any, Final

from app.billing.catalog import FREE_ALERT_LIMIT
from app.billing.errors import InvalidRequest
from app.billing.repository import Account, BillingTx, Subscription

__all__ = [
    "PRO_STATUSES",
    "account_view",
    "email_problem",
    "hash_token",
    "new_account",
    "new_token",
    "normalise_email",
    "plan_of",
]

# Stripe statuses that keep Pro: past_due is Stripe still retrying the card, so the user keeps
# Pro while they fix it (the invoice.payment_failed notice tells them to).
PRO_STATUSES: Final = frozenset({"active", "trialing", "past_due"})
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


def email_problem(text: str) -> str | None:
    """None if `text` looks like an email address, else a sentence saying what to fix."""
    value = (text or "").strip()
    if not value:
        return "Enter an email address."
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        return "Enter an email address like name@example.com."
    return None


def normalise_email(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidRequest("Enter an email address like name@example.com.")
    problem = email_problem(text)
    if problem:
        raise InvalidRequest(problem)
    return text.strip().lower()


def new_token() -> str:
    return "mrt_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_account(email: str) -> tuple[Account, str]:
    """A fresh account for `email` and its token (returned once, never stored)."""
    token = new_token()
    account = Account("acct_" + secrets.token_hex(12), normalise_email(email), hash_token(token), None, time.time())
    return account, token


def _live(subs: list[Subscription]) -> list[Subscription]:
    return [s for s in subs if not s.deleted and s.status in PRO_STATUSES]


def plan_of(tx: BillingTx, account_id: str) -> str:
    return "pro" if _live(tx.subscriptions_of(account_id)) else "free"


def account_view(tx: BillingTx, account: Account) -> dict[str, Any]:
    """The account as its own desktop sees it (JSON-ready)."""
    subs = tx.subscriptions_of(account.id)
    live = _live(subs)
    current = live[0] if live else (max(subs, key=lambda s: s.event_created) if subs else None)
    pro = bool(live)
    return {
        "id": account.id,
        "email": account.email,
        "plan": "pro" if pro else "free",
        "subscription_status": current.status if current else "",
        "current_period_end": current.current_period_end if current else None,
        "balance": tx.last_balance(account.id),
        "entitlements": {"sms_alerts": pro, "max_active_alerts": None if pro else FREE_ALERT_LIMIT},
        "last_notice_seq": tx.last_notice_seq(account.id),
    }
