"""The points ledger and a payment's state machine, on a real (in-memory) SQLite relay database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.billing import ledger
from app.billing.accounts import new_account
from app.billing.catalog import ITEMS, PACKS, from_cents, to_cents
from app.billing.errors import IllegalTransition, InsufficientPoints, InvalidRequest
from app.billing.flow import TRANSITIONS, PaymentFlow, PaymentState
from app.billing.repository import Payment
from app.billing.sqlite_repo import SchemaTooNewError, SqliteTx, open_connection, transaction


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    connection = open_connection(":memory:")
    yield connection
    connection.close()


def accounts(tx: SqliteTx, n: int) -> list[str]:
    ids = []
    for i in range(n):
        account, _ = new_account(f"user{i}@example.com")
        tx.insert_account(account)
        ids.append(account.id)
    return ids


def pack_payment(tx: SqliteTx, account_id: str, code: str = "points_500", ref: str = "pay_1") -> Payment:
    item = ITEMS[code]
    return PaymentFlow(tx).create(payment_id=ref, account_id=account_id, item=item,
                                  amount_cents=to_cents(item.price), currency="usd")


# ---------------------------------------------------------------------------- money


def test_money_converts_between_decimal_and_cents_exactly() -> None:
    assert to_cents(Decimal("20.00")) == 2000 and to_cents(Decimal("0.5")) == 50
    assert from_cents(2000) == Decimal("20.00") and str(from_cents(7)) == "0.07"
    with pytest.raises(ValueError, match="whole number of cents"):
        to_cents(Decimal("1.005"))
    with pytest.raises(ValueError):
        to_cents(20.0)  # type: ignore[arg-type]  # a float is never money
    with pytest.raises(ValueError):
        from_cents(True)  # type: ignore[arg-type]
    assert [p.points for p in PACKS] == [100, 500, 2000]


# ---------------------------------------------------------------------------- ledger


def test_spending_beyond_the_balance_is_refused_with_a_sentence(conn: sqlite3.Connection) -> None:
    with transaction(conn) as tx:
        (a,) = accounts(tx, 1)
        ledger.credit_purchase(tx, a, 10, "purchase:x", "Bought")
        with pytest.raises(InsufficientPoints) as refused:
            ledger.spend(tx, a, 11, "spend:1", "SMS alert")
        assert str(refused.value) == (
            "You have 10 points, so you cannot spend 11. Choose a smaller number of points or buy a points pack."
        )
        assert ledger.balance(tx, a) == 10
        for bad in (0, -1, 2.5, True, "3"):
            with pytest.raises(InvalidRequest, match="whole number above zero"):
                ledger.spend(tx, a, bad, "spend:bad", "")  # type: ignore[arg-type]


def test_the_same_reference_is_written_once(conn: sqlite3.Connection) -> None:
    with transaction(conn) as tx:
        a, b = accounts(tx, 2)
        first = ledger.credit_purchase(tx, a, 100, "purchase:p1", "Bought")
        assert ledger.credit_purchase(tx, a, 100, "purchase:p1", "Bought") == first
        ledger.transfer(tx, a, b, 30, "t1")
        ledger.transfer(tx, a, b, 30, "t1")
        assert (ledger.balance(tx, a), ledger.balance(tx, b)) == (70, 30)


def test_the_database_itself_refuses_a_negative_balance(conn: sqlite3.Connection) -> None:
    with transaction(conn) as tx:
        (a,) = accounts(tx, 1)
        with pytest.raises(sqlite3.IntegrityError):
            tx.insert_entry(a, "spend", -5, -5, "spend:raw", "")  # a bug bypassing ledger.py still cannot


def test_a_failed_transaction_leaves_nothing_behind(conn: sqlite3.Connection) -> None:
    with transaction(conn) as tx:
        a, b = accounts(tx, 2)
        ledger.credit_purchase(tx, a, 50, "purchase:p", "Bought")
    with pytest.raises(InsufficientPoints), transaction(conn) as tx:
        ledger.spend(tx, a, 20, "spend:1", "")
        ledger.transfer(tx, a, b, 40, "t")  # only 30 left: the whole unit of work rolls back
    with transaction(conn) as tx:
        assert (ledger.balance(tx, a), ledger.balance(tx, b)) == (50, 0)


def test_a_database_from_a_newer_relay_is_not_opened(tmp_path) -> None:
    path = tmp_path / "relay.sqlite3"
    open_connection(path).execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaTooNewError, match="newer than this relay"):
        open_connection(path)


# ---------------------------------------------------------------------------- the payment state machine


def test_success_awards_once_and_a_late_failure_changes_nothing(conn: sqlite3.Connection) -> None:
    with transaction(conn) as tx:
        (a,) = accounts(tx, 1)
        flow = PaymentFlow(tx)
        p = pack_payment(tx, a)
        p = flow.fail(p, "Your card was declined.").payment
        assert p.state == "failed"
        result = flow.succeed(p)  # another card on the same checkout page
        assert result.payment.state == "succeeded" and [n.kind for n in result.notices] == ["payment.succeeded"]
        again = flow.succeed(result.payment)
        stale = flow.fail(again.payment, "Your card was declined.")
        assert again.notices == [] and stale.notices == [] and stale.payment.state == "succeeded"
        assert ledger.balance(tx, a) == 500


def test_the_state_machine_has_no_way_back_from_a_refund(conn: sqlite3.Connection) -> None:
    assert TRANSITIONS[PaymentState.REFUNDED] == frozenset()
    assert PaymentState.FAILED not in TRANSITIONS[PaymentState.SUCCEEDED]
    with transaction(conn) as tx:
        (a,) = accounts(tx, 1)
        flow = PaymentFlow(tx)
        p = flow.succeed(pack_payment(tx, a)).payment
        p = flow.refund(p, 2000).payment
        assert p.state == "refunded" and ledger.balance(tx, a) == 0
        assert flow.succeed(p).notices == [] and ledger.balance(tx, a) == 0
        with pytest.raises(IllegalTransition):
            flow._move(p, PaymentState.SUCCEEDED)


def test_a_partial_refund_seen_first_is_undone_right_after_the_award(conn: sqlite3.Connection) -> None:
    with transaction(conn) as tx:
        (a,) = accounts(tx, 1)
        flow = PaymentFlow(tx)
        p = flow.refund(pack_payment(tx, a), 500).payment  # a quarter of $20, before the success arrived
        assert ledger.balance(tx, a) == 0 and p.state == "created"
        result = flow.succeed(p)
        assert ledger.balance(tx, a) == 375
        assert [n.kind for n in result.notices] == ["payment.succeeded", "payment.refunded"]


# ---------------------------------------------------------------------------- the property


operation = st.one_of(
    st.tuples(st.just("buy"), st.integers(0, 2), st.sampled_from([p.code for p in PACKS])),
    st.tuples(st.just("succeed"), st.integers(0, 30)),  # Stripe's success, possibly again or for a refunded one
    st.tuples(st.just("fail"), st.integers(0, 30)),
    st.tuples(st.just("refund"), st.integers(0, 30), st.integers(1, 4)),  # cumulative quarters refunded
    st.tuples(st.just("spend"), st.integers(0, 2), st.integers(1, 2500)),
    st.tuples(st.just("transfer"), st.integers(0, 2), st.integers(0, 2), st.integers(1, 2500)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, max_size=40))
def test_every_balance_is_the_sum_of_its_entries_and_never_negative(ops: list[tuple]) -> None:
    conn = open_connection(":memory:")
    try:
        with transaction(conn) as tx:
            ids = accounts(tx, 3)
        payments: list[str] = []
        expected = dict.fromkeys(ids, 0)  # a model: what each balance must be
        for n, op in enumerate(ops):
            try:
                with transaction(conn) as tx:
                    flow = PaymentFlow(tx)
                    kind = op[0]
                    if kind == "buy":
                        payments.append(pack_payment(tx, ids[op[1]], op[2], f"pay_{n}").id)
                    elif kind in ("succeed", "fail", "refund") and payments:
                        p = tx.payment(payments[op[1] % len(payments)])
                        assert p is not None
                        before = ledger.balance(tx, p.account_id)
                        if kind == "succeed":
                            result = flow.succeed(p)
                        elif kind == "fail":
                            result = flow.fail(p, "declined")
                        else:
                            result = flow.refund(p, p.amount_cents * op[2] // 4)
                        expected[p.account_id] += ledger.balance(tx, p.account_id) - before
                        q = result.payment
                        assert q.points_awarded in (0, q.points)
                        assert q.points_reverted + q.points_unrecovered <= q.points_awarded
                        assert q.points_awarded - q.points_reverted == sum(
                            e.points for e in tx.entries(q.account_id, 10_000)
                            if e.reference == f"purchase:{q.id}" or e.reference.startswith(f"refund:{q.id}:")
                        )
                    elif kind == "spend":
                        have = expected[ids[op[1]]]
                        try:
                            ledger.spend(tx, ids[op[1]], op[2], f"spend:{n}", "SMS alert")
                            expected[ids[op[1]]] -= op[2]
                        except InsufficientPoints as exc:
                            assert op[2] > have and f"You have {have} point" in str(exc)
                            raise
                    elif kind == "transfer":
                        sender, recipient = ids[op[1]], ids[op[2]]
                        have = expected[sender]
                        try:
                            ledger.transfer(tx, sender, recipient, op[3], f"t{n}")
                            expected[sender] -= op[3]
                            expected[recipient] += op[3]
                        except InsufficientPoints:
                            assert op[3] > have
                            raise
                        except InvalidRequest:
                            assert sender == recipient
                            raise
            except (InsufficientPoints, InvalidRequest):
                pass  # refused as a whole: the model did not change either
            with transaction(conn) as tx:
                for account_id in ids:
                    entries = tx.entries(account_id, 10_000)
                    assert ledger.balance(tx, account_id) == tx.sum_points(account_id) == expected[account_id]
                    assert all(e.balance_after >= 0 for e in entries)
                    running = 0
                    for e in reversed(entries):  # oldest first: each balance_after is the running sum
                        running += e.points
                        assert e.balance_after == running
                purchases = [r[0] for r in conn.execute(
                    "SELECT reference FROM ledger_entries WHERE kind = 'purchase'")]
                assert len(purchases) == len(set(purchases))  # nothing awarded twice
    finally:
        conn.close()
