"""The points ledger: every change is an entry, and a balance is only ever the sum of its entries.

Invariants, enforced here and again by the database's CHECK constraints:

* an account's balance is the `balance_after` of its newest entry, which equals
  the sum of all its entries' points;
* no balance is ever negative: a spend or transfer beyond the balance is
  refused with a sentence, and a refund takes back at most what is left;
* an entry's `reference` is unique, so the same purchase, spend, transfer or
  refund is never written twice: writing it again returns the first entry.

All functions take an open transaction (repository.BillingTx) and must run
inside it, so a balance read and the entry written below it are atomic.
"""

from __future__ import annotations

from app.billing.errors import BillingError, InsufficientPoints, InvalidRequest
from app.billing.repository import BillingTx, LedgerEntry, LedgerKind

__all__ = ["balance", "check_points", "credit_purchase", "spend", "take_back", "transfer"]


def check_points(points: object, *, what: str = "Points") -> int:
    """A positive whole number of points, or an InvalidRequest sentence."""
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise InvalidRequest(f"{what} must be a whole number above zero.")
    return points


def balance(tx: BillingTx, account_id: str) -> int:
    return tx.last_balance(account_id)


def _post(tx: BillingTx, account_id: str, kind: LedgerKind, points: int, reference: str, note: str) -> LedgerEntry:
    existing = tx.entry_by_reference(reference)
    if existing is not None:
        if (existing.account_id, existing.kind, existing.points) != (account_id, kind, points):
            # Two different operations under one reference would be a bug above; never merge them silently.
            raise BillingError("This operation's reference was already used for another one; nothing was changed.")
        return existing
    after = tx.last_balance(account_id) + points
    if after < 0:
        raise InsufficientPoints(_short(tx.last_balance(account_id), -points, kind))
    return tx.insert_entry(account_id, kind, points, after, reference, note)


def _short(have: int, want: int, kind: LedgerKind) -> str:
    verb = "transfer" if kind == "transfer" else "spend"
    unit = "point" if have == 1 else "points"
    return (
        f"You have {have} {unit}, so you cannot {verb} {want}. "
        "Choose a smaller number of points or buy a points pack."
    )


def credit_purchase(tx: BillingTx, account_id: str, points: int, reference: str, note: str) -> LedgerEntry:
    return _post(tx, account_id, "purchase", check_points(points), reference, note)


def spend(tx: BillingTx, account_id: str, points: int, reference: str, note: str) -> LedgerEntry:
    """Spend points (one per SMS alert); InsufficientPoints if the balance is too small."""
    return _post(tx, account_id, "spend", -check_points(points), reference, note)


def transfer(
    tx: BillingTx, sender: str, recipient: str, points: int, reference: str, *, note_out: str = "", note_in: str = ""
) -> tuple[LedgerEntry, LedgerEntry]:
    """Move points between accounts: one `transfer` entry on each side, both or neither (one transaction)."""
    check_points(points)
    if sender == recipient:
        raise InvalidRequest("You cannot transfer points to your own account; enter another account's email.")
    out = _post(tx, sender, "transfer", -points, f"{reference}:out", note_out)
    into = _post(tx, recipient, "transfer", points, f"{reference}:in", note_in)
    return out, into


def take_back(tx: BillingTx, account_id: str, points: int, reference: str, note: str) -> tuple[LedgerEntry | None, int]:
    """Revert up to `points` of a refunded purchase; returns (entry or None, points that could not be taken back).

    Points already spent or transferred away cannot be taken back without a
    negative balance, which the ledger never allows; the shortfall is returned
    so the payment records it for an operator to settle.
    """
    check_points(points)
    existing = tx.entry_by_reference(reference)
    if existing is not None:
        return existing, points + existing.points  # existing.points is negative
    available = tx.last_balance(account_id)
    taken = min(points, available)
    if taken == 0:
        return None, points
    return _post(tx, account_id, "refund", -taken, reference, note), points - taken
