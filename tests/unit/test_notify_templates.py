"""Templates: what each kind of notification says, in text and HTML, with exact money."""

from __future__ import annotations

import html
from decimal import Decimal

import pytest

from app.domain import Fill, Side
from app.notify.message import Message, Target, format_money
from app.notify.templates import KINDS, TemplateError, render

NOW = 1_700_000_000.0

SAMPLES = {
    "trade_executed": {"symbol": "BTC/USDT", "side": "buy", "amount": Decimal("0.5"), "price": Decimal("65000.10"),
                       "venue": "binance", "order_id": "mt0123456789abcdef0123", "fee": Decimal("0.0005"),
                       "fee_asset": "BTC", "ts": 1_700_000_000_000},
    "price_alert": {"symbol": "ETH/USDT", "price": Decimal("3200.55"), "condition": "above",
                    "threshold": Decimal("3200"), "venue": "gate", "note": "take profit"},
    "risk_limit_exceeded": {"rule": "max_order_notional", "limit": Decimal("1000"), "value": Decimal("1250.50"),
                            "symbol": "BTC/USDT"},
    "strategy_stopped": {"strategy": "grid-btc", "reason": "the venue rejected three orders in a row",
                         "symbol": "BTC/USDT", "pnl": Decimal("-12.34")},
    "payment_succeeded": {"amount": Decimal("20.00"), "currency": "usd", "points": 2000, "reference": "pi_123"},
    "payment_failed": {"amount": Decimal("20.00"), "currency": "EUR", "reason": "the card was declined",
                       "reference": "pi_456"},
    "order_rejected": {"symbol": "ETH/USDT", "side": "sell", "amount": Decimal("2"), "price": Decimal("3100.5"),
                       "venue": "binance", "order_id": "mt00ff", "reason": "Account has insufficient balance."},
}

EXPECTED_TITLES = {
    "trade_executed": "Bought 0.5 BTC at 65,000.10 USDT",
    "price_alert": "ETH/USDT above 3,200",
    "risk_limit_exceeded": "Risk limit exceeded: largest order value",
    "strategy_stopped": "Strategy stopped: grid-btc",
    "payment_succeeded": "Payment received: 20.00 USD",
    "payment_failed": "Payment failed: 20.00 EUR",
    "order_rejected": "Order rejected: sell 2 ETH at 3,100.5 USDT",
}


def test_every_kind_has_a_sample() -> None:
    assert set(SAMPLES) == set(KINDS) == set(EXPECTED_TITLES)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_renders_title_text_html_fields_colour_and_target(kind: str) -> None:
    m = render(kind, SAMPLES[kind], f"id-{kind}", now=NOW)
    assert m.title == EXPECTED_TITLES[kind]
    assert m.kind == kind and m.message_id == f"id-{kind}"
    assert m.summary and m.summary in m.text and html.escape(m.summary) in m.html
    assert m.html.startswith("<!DOCTYPE html>") and html.escape(m.title) in m.html
    assert m.fields and all(f.name and f.value for f in m.fields)
    for f in m.fields:  # every field is in the text and the HTML table
        assert f"{f.name}: {f.value}" in m.text
        assert html.escape(f.value) in m.html
    assert 0 <= m.colour <= 0xFFFFFF
    assert isinstance(m.target, Target) and m.target.kind in ("symbol", "order", "strategy", "billing", "risk")
    assert m.created_at > 0


def test_a_trade_says_what_was_bought_with_exact_money_and_targets_the_order() -> None:
    m = render("trade_executed", SAMPLES["trade_executed"], "fill:binance:1", now=NOW)
    assert m.summary == "Bought 0.5 BTC at 65,000.10 USDT on Binance (value 32,500.050 USDT)."
    assert ("Fee", "0.0005 BTC") in [(f.name, f.value) for f in m.fields]
    assert m.target == Target("order", "mt0123456789abcdef0123", "binance", "BTC/USDT")
    assert m.created_at == 1_700_000_000.0  # the fill's own time, not the render time
    sell = render("trade_executed", {**SAMPLES["trade_executed"], "side": "sell"}, "x", now=NOW)
    assert sell.title.startswith("Sold") and sell.colour != m.colour


def test_money_is_never_rounded_or_turned_into_float() -> None:
    m = render("trade_executed", {"symbol": "PEPE/USDT", "side": "buy", "amount": Decimal("123456789"),
                                  "price": Decimal("0.00000123")}, "x", now=NOW)
    assert "0.00000123 USDT" in m.title and "123,456,789 PEPE" in m.title
    assert "value 151.85185047 USDT" in m.summary  # 123456789 * 0.00000123, every digit
    assert format_money(Decimal("1E+3"), "USDT") == "1,000 USDT"
    with pytest.raises(TemplateError, match="float"):
        render("price_alert", {"symbol": "BTC/USDT", "price": 70000.1}, "x")


def test_user_data_is_escaped_in_html_and_kept_verbatim_in_text() -> None:
    note = '<script>alert("x")</script> & <b>bold</b>'
    m = render("price_alert", {**SAMPLES["price_alert"], "note": note}, "x", now=NOW)
    assert "<script>" not in m.html and "<b>bold" not in m.html
    assert html.escape(note) in m.html
    assert note in m.text and note in m.detail


def test_domain_objects_are_accepted_as_data() -> None:
    fill = Fill(order_id="123", trade_id="456", symbol="ETH/USDT", side=Side.SELL, price=Decimal("3000.5"),
                amount=Decimal("2"), fee=Decimal("1.2"), fee_asset="USDT", ts=1_700_000_000_000)
    m = render("trade_executed", fill, "fill:sim:456", now=NOW)
    assert m.title == "Sold 2 ETH at 3,000.5 USDT"
    assert m.target == Target("order", "123", "", "ETH/USDT")


def test_missing_data_and_unknown_kinds_are_refused_with_a_sentence() -> None:
    with pytest.raises(TemplateError, match="'price'"):
        render("price_alert", {"symbol": "BTC/USDT"}, "x")
    with pytest.raises(TemplateError, match="kinds are: trade_executed"):
        render("margin_call", {}, "x")


def test_a_message_survives_the_outbox_json_unchanged() -> None:
    for kind in KINDS:
        m = render(kind, SAMPLES[kind], f"id-{kind}", now=NOW)
        assert Message.from_json(m.to_json()) == m


def test_a_plan_payment_says_nothing_about_points() -> None:
    m = render("payment_succeeded", {"amount": Decimal("9.99"), "currency": "usd", "points": 0, "plan": "Pro",
                                     "reference": "pi_9"}, "m1", now=NOW)
    assert "points" not in m.text.lower() and "Plan: Pro" in m.text
