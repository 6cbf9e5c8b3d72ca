"""Risk limits refuse an order before it is sent, naming the rule and the numbers, and tell the bus."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from app.bus import EventBus, Priority
from app.domain import Balance, Market, OrderRequest, OrderType, Side
from app.settings import RiskSettings
from app.trading.risk import TOPIC_RISK, RiskChecker, RiskLimitExceeded, RiskLimits
from app.venues.base import OrderRejected

BTC = Market("BTC/USDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"), min_notional=Decimal("5"))


def order(amount: str, side: Side = Side.BUY, kind: OrderType = OrderType.LIMIT) -> OrderRequest:
    return OrderRequest("BTC/USDT", side, kind, Decimal(amount), "c1", price=Decimal("50000"))


async def test_each_limit_refuses_with_its_rule_and_numbers_and_publishes_high() -> None:
    bus = EventBus()
    seen = []
    bus.subscribe(TOPIC_RISK, lambda e: seen.append(e))
    await bus.start()
    checker = RiskChecker(RiskLimits(Decimal("1000"), Decimal("3000"), Decimal("200"), 2), bus)
    price = Decimal("50000")
    with pytest.raises(RiskLimitExceeded, match=r"worth 1,500.00 USDT, above the maximum order value of 1,000.00 USDT") as e:
        checker.check(order("0.03"), BTC, price=price, position_base=Decimal(0), open_orders=0)
    assert isinstance(e.value, OrderRejected) and e.value.breach.rule == "max_order_notional"
    with pytest.raises(RiskLimitExceeded, match=r"hold 3,500.00 USDT of BTC, above the maximum position of 3,000.00"):
        checker.check(order("0.01"), BTC, price=price, position_base=Decimal("0.06"), open_orders=0)
    checker.check(order("0.01", Side.SELL), BTC, price=price, position_base=Decimal("0.06"), open_orders=0)  # selling reduces
    with pytest.raises(RiskLimitExceeded, match=r"2 orders are already open, the maximum is 2"):
        checker.check(order("0.01"), BTC, price=price, position_base=Decimal(0), open_orders=2)
    with pytest.raises(RiskLimitExceeded, match=r"today's loss is 250.00 USDT.*maximum daily loss of 200.00"):
        checker.check(order("0.01"), BTC, price=price, position_base=Decimal(0), open_orders=0, daily_loss=Decimal("250"))
    checker.check(order("0.01"), BTC, price=price, position_base=Decimal(0), open_orders=1, daily_loss=Decimal("10"))
    await bus.drain()
    assert [e.payload.rule for e in seen] == ["max_order_notional", "max_position_notional", "max_open_orders", "max_daily_loss"]
    assert all(e.priority is Priority.HIGH for e in seen)
    await bus.stop()


def test_zero_means_no_limit() -> None:
    checker = RiskChecker(RiskLimits.from_settings(RiskSettings()))
    checker.check(order("1000"), BTC, price=Decimal("50000"), position_base=Decimal("99"), open_orders=500,
                  daily_loss=Decimal("1e9"))


def test_daily_loss_counts_from_the_days_first_equity_and_resets_at_midnight_utc() -> None:
    checker = RiskChecker(RiskLimits(max_daily_loss=Decimal("100")))
    day = dt.datetime(2026, 11, 22, 9, tzinfo=dt.UTC)
    balances = {"USDT": Balance("USDT", Decimal("1000")), "BTC": Balance("BTC", Decimal("0.1"))}
    start = checker.equity(balances, {"BTC/USDT": Decimal("50000")}, "USDT")
    assert start == Decimal("6000")
    assert checker.observe_equity(start, day) == 0
    later = checker.equity(balances, {"BTC/USDT": Decimal("48500")}, "USDT")
    assert checker.observe_equity(later, day + dt.timedelta(hours=3)) == Decimal("150")
    assert checker.observe_equity(later, day + dt.timedelta(days=1)) == 0  # a new day starts from here


def test_each_quote_currency_has_its_own_day_start() -> None:
    checker = RiskChecker(RiskLimits(max_daily_loss=Decimal("100")))
    day = dt.datetime(2026, 11, 22, 9, tzinfo=dt.UTC)
    assert checker.observe_equity(Decimal("6000"), day, "USDT") == 0
    assert checker.observe_equity(Decimal("0.1"), day, "BTC") == 0  # never compared with USDT
    assert checker.observe_equity(Decimal("5900"), day, "USDT") == Decimal("100")


async def test_the_days_starting_value_survives_a_restart(tmp_path) -> None:
    from app.paths import resolve_paths
    from app.runtime import Runtime
    from app.settings import Settings

    paths = resolve_paths(tmp_path / "settings.toml", tmp_path / "data")
    first = Runtime(Settings(), paths)
    first.open_store()
    assert await first._daily_loss("USDT", Decimal("1000")) == 0
    assert await first._daily_loss("USDT", Decimal("900")) == Decimal("100")
    first.store.close()
    again = Runtime(Settings(), paths)  # the app restarted the same day
    again.open_store()
    assert await again._daily_loss("USDT", Decimal("850")) == Decimal("150")
    again.store.close()
