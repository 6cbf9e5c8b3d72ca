"""What the desktop makes of the relay's JSON, and where it keeps the account token."""

from __future__ import annotations

from decimal import Decimal

from app.billing.models import AccountView, PaymentEvent, RelayNotice
from app.billing.token_store import StoredToken, keyring_token_io
from app.notify.templates import render
from app.secrets import MemorySecretStore, get_token


def test_a_payment_notice_becomes_a_payment_event_with_decimal_money() -> None:
    notice = RelayNotice.from_json({
        "seq": 7, "kind": "payment.succeeded", "item": "points_500", "item_name": "500 points", "points": 500,
        "amount": "20.00", "currency": "usd", "reference": "pay_abc", "reason": "", "balance": 520,
    })
    event = PaymentEvent.from_notice(notice)
    assert notice.seq == 7
    assert event == PaymentEvent("points_500", "500 points", 500, Decimal("20.00"), "usd", "pay_abc", "", 520)
    assert isinstance(event.amount, Decimal) and event.plan == ""


def test_the_notification_templates_can_render_the_payment_events() -> None:
    paid = PaymentEvent("pro_monthly", "Meridian Pro (monthly)", 0, Decimal("9.00"), "usd", "pay_x")
    failed = PaymentEvent("points_100", "100 points", 0, Decimal("5.00"), "usd", "pay_y", "Your card was declined.")
    assert "9.00" in render("payment_succeeded", paid, "m1", now=0.0).title
    assert "Your card was declined" in render("payment_failed", failed, "m2", now=0.0).summary


def test_an_account_view_reads_plan_and_entitlements() -> None:
    free = AccountView.from_json({"id": "acct_1", "email": "a@b.co", "plan": "free", "balance": 3,
                                  "entitlements": {"sms_alerts": False, "max_active_alerts": 20},
                                  "last_notice_seq": 2})
    pro = AccountView.from_json({"id": "acct_1", "email": "a@b.co", "plan": "pro", "balance": 3,
                                 "entitlements": {"sms_alerts": True, "max_active_alerts": None}})
    assert (free.is_pro, free.max_active_alerts, free.sms_alerts) == (False, 20, False)
    assert (pro.is_pro, pro.max_active_alerts, pro.sms_alerts) == (True, None, True)


async def test_the_token_lives_in_the_secret_store_under_billing() -> None:
    store = MemorySecretStore()
    load, save = keyring_token_io(store)
    assert await load() is None
    await save(StoredToken("ada@example.com", "mrt_secret-token-value"))
    creds = await store.get("billing")
    assert creds is not None and creds.api_key == "ada@example.com"
    assert await get_token(store, "billing") == "mrt_secret-token-value"
    assert await load() == StoredToken("ada@example.com", "mrt_secret-token-value")
    assert "mrt_secret-token-value" not in repr(await load())
    await save(None)
    assert await load() is None
