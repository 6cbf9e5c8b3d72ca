"""Alerts: conditions, cooldowns, once/repeat, plan limits, persistence, and what a firing carries."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from app.alerts import Alert, AlertEngine, AlertInvalid, AlertKind, AlertRepo, Firing, describe, parse_decimal
from app.bus import EventBus
from app.domain import Order, OrderStatus, OrderType, Side, Ticker, Trade
from app.store import Store
from app.trading.risk import RiskBreach


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now




def tick(bus: EventBus, price: str, symbol: str = "BTC/USDT") -> None:
    bus.publish("price.updated", Ticker(symbol, 0, Decimal(price), venue="sim"))


async def engine_with(bus: EventBus, clock: Clock, **kw) -> tuple[AlertEngine, list[Firing]]:  # noqa: ANN003
    sent: list[Firing] = []

    async def send(f: Firing) -> None:
        sent.append(f)

    engine = AlertEngine(bus, send=send, wall=clock, **kw)
    await engine.start()
    return engine, sent


async def settle(bus: EventBus, engine: AlertEngine) -> None:
    await bus.drain()
    await engine.stop()  # waits for the firings' tasks
    await engine.start()


async def test_crossing_above_fires_once_per_cooldown_and_a_level_already_behind_does_not(bus: EventBus) -> None:
    clock = Clock()
    engine, sent = await engine_with(bus, clock)
    await engine.add(Alert(AlertKind.PRICE_ABOVE, "BTC/USDT", price=Decimal("70000"), cooldown_s=60, repeat=True))
    tick(bus, "70500")  # the first price seen: already above, not a crossing
    await bus.drain()
    tick(bus, "69990")
    await bus.drain()
    tick(bus, "70000")  # crosses: at the level counts
    await bus.drain()
    tick(bus, "69000")
    await bus.drain()
    tick(bus, "71000")  # crosses again within the cooldown: nothing
    await settle(bus, engine)
    assert len(sent) == 1
    assert sent[0].kind == "price_alert" and sent[0].data["threshold"] == Decimal("70000")
    assert sent[0].data["price"] == Decimal("70000") and sent[0].data["condition"] == "crossed above"
    clock.now += 61
    tick(bus, "69000")
    await bus.drain()
    tick(bus, "70001")
    await settle(bus, engine)
    assert len(sent) == 2 and sent[0].message_id != sent[1].message_id


async def test_a_once_only_alert_switches_itself_off(bus: EventBus) -> None:
    engine, sent = await engine_with(bus, Clock())
    a = await engine.add(Alert(AlertKind.PRICE_BELOW, "BTC/USDT", price=Decimal("100"), cooldown_s=0))
    for p in ("101", "99", "101", "98"):
        tick(bus, p)
        await bus.drain()
    await settle(bus, engine)
    assert len(sent) == 1
    assert engine.alerts[0].id == a.id and not engine.alerts[0].active and engine.alerts[0].fired_count == 1


async def test_percent_change_within_a_window(bus: EventBus) -> None:
    clock = Clock()
    engine, sent = await engine_with(bus, clock)
    await engine.add(Alert(AlertKind.PCT_CHANGE, "ETH/USDT", pct=Decimal("2"), window_s=300))
    tick(bus, "1000", "ETH/USDT")
    await bus.drain()
    clock.now += 400  # the 1000 falls out of the window
    tick(bus, "1015", "ETH/USDT")
    await bus.drain()
    clock.now += 100
    tick(bus, "1030", "ETH/USDT")  # +1.48% on the window's oldest (1015): not yet
    await bus.drain()
    assert not sent
    clock.now += 100
    tick(bus, "1036", "ETH/USDT")  # +2.07%
    await settle(bus, engine)
    assert len(sent) == 1 and "+2.07%" in sent[0].data["condition"]


async def test_volume_spike_needs_history_and_a_multiple_of_the_average(bus: EventBus) -> None:
    clock = Clock()
    clock.now -= clock.now % 60
    engine, sent = await engine_with(bus, clock)
    await engine.add(Alert(AlertKind.VOLUME_SPIKE, "BTC/USDT", multiple=Decimal("3"), window_s=600))

    def trade(amount: str) -> None:
        bus.publish("market.trade", Trade("BTC/USDT", int(clock.now * 1000), Decimal("100"), Decimal(amount), Side.BUY))

    for _ in range(6):  # six quiet minutes of 1.0 each
        trade("1")
        await bus.drain()
        clock.now += 60
    trade("2.5")
    await bus.drain()
    assert not sent  # 2.5x the average: below 3x
    trade("0.6")  # 3.1 this minute
    await settle(bus, engine)
    assert len(sent) == 1 and sent[0].data["threshold"] == Decimal("3")


async def test_order_events_fire_their_own_templates(bus: EventBus) -> None:
    engine, sent = await engine_with(bus, Clock())
    await engine.add(Alert(AlertKind.ORDER_FILLED, "", channels=("desktop", "discord"), cooldown_s=0, repeat=True))
    await engine.add(Alert(AlertKind.ORDER_REJECTED, "", cooldown_s=0, repeat=True))
    await engine.add(Alert(AlertKind.RISK_LIMIT, "", cooldown_s=0, repeat=True))
    filled = Order("1", "mtabc", "BTC/USDT", Side.BUY, OrderType.LIMIT, OrderStatus.FILLED, Decimal("0.5"), 0,
                   price=Decimal("100"), filled=Decimal("0.5"), average_price=Decimal("99.5"))
    bus.publish("order.updated", filled)
    bus.publish("order.updated", Order("2", "mtdef", "BTC/USDT", Side.BUY, OrderType.LIMIT, OrderStatus.OPEN,
                                       Decimal("1"), 0, price=Decimal("90")))
    bus.publish("order.rejected", Order("", "mtghi", "ETH/USDT", Side.SELL, OrderType.MARKET,
                                        OrderStatus.REJECTED, Decimal("2"), 0, reason="Insufficient balance."))
    bus.publish("risk.limit.exceeded", RiskBreach("max_order_notional", Decimal("1000"), Decimal("1500"), "BTC/USDT",
                                                  "Order value 1500 USDT exceeds the limit of 1000 USDT."))
    await settle(bus, engine)
    kinds = sorted(f.kind for f in sent)
    assert kinds == ["order_rejected", "risk_limit_exceeded", "trade_executed"]
    fill = next(f for f in sent if f.kind == "trade_executed")
    assert fill.data["price"] == Decimal("99.5") and fill.message_id.endswith(":mtabc")
    assert fill.alert.channels == ("desktop", "discord")


async def test_validation_sentences_by_field_and_plan_limits(bus: EventBus) -> None:
    engine, _ = await engine_with(bus, Clock(), known_symbols=lambda: {"BTC/USDT"})
    with pytest.raises(AlertInvalid) as err:
        await engine.add(Alert(AlertKind.PRICE_ABOVE, "DOGE/USDT", price=None, channels=("sms",)))
    assert set(err.value.problems) == {"symbol", "price", "channels"}
    assert "Pro plan" in err.value.problems["channels"]
    for i in range(20):
        await engine.add(Alert(AlertKind.PRICE_ABOVE, "BTC/USDT", price=Decimal(1000 + i)))
    with pytest.raises(AlertInvalid) as err:
        await engine.add(Alert(AlertKind.PRICE_ABOVE, "BTC/USDT", price=Decimal(5)))
    assert "at most 20 active alerts" in err.value.problems["plan"]
    await engine.add(Alert(AlertKind.PRICE_ABOVE, "BTC/USDT", price=Decimal(5), active=False))  # inactive is fine
    engine.pro = lambda: True
    await engine.add(Alert(AlertKind.PRICE_ABOVE, "BTC/USDT", price=Decimal(6), channels=("sms",)))


async def test_alerts_survive_a_restart_with_their_state(bus: EventBus, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.sqlite3")
    clock = Clock()
    engine, sent = await engine_with(bus, clock, repo=AlertRepo(store, wall=clock))
    a = await engine.add(Alert(AlertKind.PRICE_ABOVE, "BTC/USDT", price=Decimal("0.00012345"), cooldown_s=3600,
                               repeat=True, channels=("desktop", "email"), note="breakout"))
    tick(bus, "0.0001")
    await bus.drain()
    tick(bus, "0.00013")
    await settle(bus, engine)
    await engine.stop()
    assert len(sent) == 1

    again, sent2 = await engine_with(bus, clock, repo=AlertRepo(store, wall=clock))
    [b] = again.alerts
    assert (b.id, b.price, b.channels, b.note, b.fired_count) == (a.id, Decimal("0.00012345"), ("desktop", "email"),
                                                                   "breakout", 1)
    clock.now += 60
    tick(bus, "0.0001")
    await bus.drain()
    tick(bus, "0.00013")
    await settle(bus, again)
    assert not sent2  # the cooldown from before the restart still holds
    moved = await again.move(a.id, Decimal("0.0002"))
    assert moved.price == Decimal("0.0002")
    await again.stop()
    store.close()


def test_describe_and_parse() -> None:
    assert describe(Alert(AlertKind.PRICE_ABOVE, "BTC/USDT", price=Decimal("70000"))) == "BTC/USDT crosses above 70,000"
    assert describe(Alert(AlertKind.PCT_CHANGE, "ETH/USDT", pct=Decimal("2.5"), window_s=3600)) == \
        "ETH/USDT moves 2.5% within 1h"
    assert parse_decimal("70,000.5") == Decimal("70000.5")
    assert parse_decimal("1e5") is None and parse_decimal("nan") is None and parse_decimal("") is None
