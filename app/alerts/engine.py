"""Evaluates alerts on bus events, in the core: with the window closed to the tray and headless too.

Inputs: `price.updated` (crossings and % change), `market.trade` (volume spikes),
`order.updated` (filled), `order.rejected`, `risk.limit.exceeded`. A firing is
published as `alert.fired` and handed to `send` (the notification service), with a
message id derived from the alert and the moment, so a firing is delivered once per
channel however often it is retried.

Decisions:
* Handlers run on the bus's dispatch and must be quick: alerts are indexed by symbol,
  and saving the firing and sending it happen in tasks.
* The cooldown is checked and the firing recorded synchronously, before any await,
  so two ticks in one dispatch can never both fire.
* `price.updated` is conflated per (venue, symbol); a crossing between two delivered
  prices is still seen, because a crossing compares the previous delivered price with
  the current one, not each print.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from app.alerts.model import Alert, AlertKind, _duration, validate
from app.alerts.repo import AlertRepo
from app.bus import Event, EventBus, Priority
from app.domain import OrderStatus

__all__ = ["TOPIC_ALERT_FIRED", "TOPIC_ALERTS_CHANGED", "AlertEngine", "AlertInvalid", "Firing"]

log = logging.getLogger(__name__)

TOPIC_ALERT_FIRED = "alert.fired"
TOPIC_ALERTS_CHANGED = "alerts.changed"
VOLUME_BUCKET_S = 60


class AlertInvalid(ValueError):
    """The alert cannot be saved; `problems` maps each form field to its sentence."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__(" ".join(problems.values()))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Firing:
    alert: Alert
    kind: str  # the notification template: price_alert, trade_executed, order_rejected, risk_limit_exceeded
    data: dict[str, Any]
    message_id: str
    at: float  # wall clock


Sender = Callable[[Firing], Awaitable[Any]]


class AlertEngine:
    def __init__(self, bus: EventBus, repo: AlertRepo | None = None, send: Sender | None = None, *,
                 wall: Callable[[], float] = time.time, pro: Callable[[], bool] = lambda: False,
                 known_symbols: Callable[[], set[str]] | None = None) -> None:
        self.bus = bus
        self.repo = repo
        self.send = send
        self._wall = wall
        self.pro = pro
        self.known_symbols = known_symbols
        self._alerts: dict[int, Alert] = {}
        self._by_symbol: dict[str, list[int]] = defaultdict(list)
        self._last: dict[str, Decimal] = {}  # the previous delivered price per symbol
        self._history: dict[str, deque[tuple[float, Decimal]]] = defaultdict(deque)
        self._volume: dict[str, deque[list[Any]]] = defaultdict(deque)  # [bucket_start, volume]
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._next_local_id = -1  # ids for alerts made without a repo (tests, `watch`)
        self.fired: list[Firing] = []  # this run's firings, newest last (bounded)

    # ---- life

    async def start(self) -> None:
        if self.repo is not None:  # the file is the truth: a restarted engine reloads, never doubles
            self._alerts.clear()
            self._by_symbol.clear()
            for alert in await self.repo.all():
                self._index(alert)
        for topic, handler in (("price.updated", self.on_price), ("market.trade", self.on_trade),
                               ("order.updated", self.on_order), ("order.rejected", self.on_rejected),
                               ("risk.limit.exceeded", self.on_risk)):
            self._subs.append(self.bus.subscribe(topic, handler))

    async def stop(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs.clear()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ---- the alerts

    @property
    def alerts(self) -> list[Alert]:
        return sorted(self._alerts.values(), key=lambda a: a.id)

    def active_count(self, excluding: int = 0) -> int:
        return sum(1 for a in self._alerts.values() if a.active and a.id != excluding)

    def check(self, alert: Alert) -> dict[str, str]:
        known = self.known_symbols() if self.known_symbols is not None else None
        return validate(alert, pro=self.pro(), active_count=self.active_count(excluding=alert.id), known_symbols=known)

    async def add(self, alert: Alert) -> Alert:
        problems = self.check(replace(alert, id=0))
        if problems:
            raise AlertInvalid(problems)
        if self.repo is not None:
            alert = await self.repo.add(alert)
        else:
            alert = replace(alert, id=self._next_local_id, created_at=int(self._wall() * 1000))
            self._next_local_id -= 1
        self._index(alert)
        self._changed()
        return alert

    async def update(self, alert: Alert) -> Alert:
        if alert.id not in self._alerts:
            raise KeyError(alert.id)
        problems = self.check(alert)
        if problems:
            raise AlertInvalid(problems)
        self._unindex(alert.id)
        self._index(alert)
        if self.repo is not None:
            await self.repo.update(alert)
        self._changed()
        return alert

    async def move(self, alert_id: int, price: Decimal) -> Alert:
        """A price line dragged on the chart: the level changes, the rest stays."""
        return await self.update(replace(self._alerts[alert_id], price=price))

    async def set_active(self, alert_id: int, active: bool) -> Alert:
        return await self.update(replace(self._alerts[alert_id], active=active))

    async def delete(self, alert_id: int) -> None:
        self._unindex(alert_id)
        if self.repo is not None:
            await self.repo.delete(alert_id)
        self._changed()

    def _index(self, alert: Alert) -> None:
        self._alerts[alert.id] = alert
        self._by_symbol[alert.symbol].append(alert.id)

    def _unindex(self, alert_id: int) -> None:
        old = self._alerts.pop(alert_id, None)
        if old is not None and alert_id in self._by_symbol.get(old.symbol, []):
            self._by_symbol[old.symbol].remove(alert_id)

    def _changed(self) -> None:
        self.bus.publish(TOPIC_ALERTS_CHANGED, None, Priority.LOW)

    def _watching(self, symbol: str, venue: str, kinds: tuple[AlertKind, ...]) -> list[Alert]:
        ids = self._by_symbol.get(symbol, []) + (self._by_symbol.get("", []) if symbol else [])
        out = []
        for i in ids:
            a = self._alerts[i]
            if a.active and a.kind in kinds and (not a.venue or not venue or a.venue == venue):
                out.append(a)
        return out

    # ---- market events

    def on_price(self, event: Event) -> None:
        t = event.payload
        symbol, price, now = t.symbol, t.last, self._wall()
        prev = self._last.get(symbol)
        self._last[symbol] = price
        history = self._history[symbol]
        history.append((now, price))
        kinds = (AlertKind.PRICE_ABOVE, AlertKind.PRICE_BELOW, AlertKind.PCT_CHANGE)
        watching = self._watching(symbol, t.venue, kinds)
        longest = max((a.window_s for a in watching if a.kind is AlertKind.PCT_CHANGE), default=0)
        while history and now - history[0][0] > max(longest, 1):
            history.popleft()  # kept only as long as the longest % window needs
        for a in watching:
            if a.kind is AlertKind.PRICE_ABOVE and prev is not None and a.price is not None and prev < a.price <= price:
                self._fire(a, "price_alert", self._price_data(a, t, "crossed above", a.price), now)
            elif a.kind is AlertKind.PRICE_BELOW and prev is not None and a.price is not None and prev > a.price >= price:
                self._fire(a, "price_alert", self._price_data(a, t, "crossed below", a.price), now)
            elif a.kind is AlertKind.PCT_CHANGE and a.pct is not None:
                start = next((p for ts, p in history if now - ts <= a.window_s), None)
                if start and start > 0:
                    move = (price - start) / start * 100
                    if abs(move) >= a.pct:
                        condition = f"moved {move:+.2f}% within {_duration(a.window_s)}, alert at ±%"
                        self._fire(a, "price_alert", self._price_data(a, t, condition, a.pct), now)

    def on_trade(self, event: Event) -> None:
        tr = event.payload
        watching = self._watching(tr.symbol, getattr(tr, "venue", ""), (AlertKind.VOLUME_SPIKE,))
        buckets = self._volume[tr.symbol]
        now = self._wall()
        start = now - now % VOLUME_BUCKET_S
        if buckets and buckets[-1][0] == start:
            buckets[-1][1] += tr.amount
        else:
            buckets.append([start, tr.amount])
        longest = max((a.window_s for a in watching), default=0)
        while buckets and now - buckets[0][0] > longest + VOLUME_BUCKET_S:
            buckets.popleft()
        current = buckets[-1][1]
        for a in watching:
            past = [v for s, v in list(buckets)[:-1] if now - s <= a.window_s + VOLUME_BUCKET_S]
            if len(past) < 5 or a.multiple is None:
                continue  # too little history to call anything a spike
            average = sum(past, Decimal(0)) / len(past)
            if average > 0 and current >= a.multiple * average:
                data = {"symbol": tr.symbol, "price": tr.price, "venue": getattr(tr, "venue", ""),
                        "condition": f"volume this minute is {current / average:.1f}x the average; alert at",
                        "threshold": a.multiple, "note": a.note}
                self._fire(a, "price_alert", data, now)

    # ---- order events

    def on_order(self, event: Event) -> None:
        order = event.payload
        if order.status is not OrderStatus.FILLED:
            return
        venue = getattr(order, "venue", "")
        for a in self._watching(order.symbol, venue, (AlertKind.ORDER_FILLED,)):
            data = {"symbol": order.symbol, "side": order.side.value, "amount": order.filled,
                    "price": order.average_price or order.price, "venue": venue, "order_id": order.client_order_id,
                    "fee": order.fee, "fee_asset": order.fee_asset}
            self._fire(a, "trade_executed", data, self._wall(), key=order.client_order_id)

    def on_rejected(self, event: Event) -> None:
        order = event.payload
        venue = getattr(order, "venue", "")
        for a in self._watching(order.symbol, venue, (AlertKind.ORDER_REJECTED,)):
            data = {"symbol": order.symbol, "side": order.side.value, "amount": order.amount, "price": order.price,
                    "venue": venue, "order_id": order.client_order_id, "reason": order.reason or "no reason given"}
            self._fire(a, "order_rejected", data, self._wall(), key=order.client_order_id)

    def on_risk(self, event: Event) -> None:
        breach = event.payload
        for a in self._watching(breach.symbol, "", (AlertKind.RISK_LIMIT,)):
            data = {"rule": breach.rule, "limit": breach.limit, "value": breach.value, "symbol": breach.symbol,
                    "message": breach.message}
            self._fire(a, "risk_limit_exceeded", data, self._wall())

    # ---- firing

    @staticmethod
    def _price_data(a: Alert, t: Any, condition: str, threshold: Decimal) -> dict[str, Any]:
        return {"symbol": t.symbol, "price": t.last, "venue": t.venue, "condition": condition,
                "threshold": threshold, "note": a.note}

    def _fire(self, alert: Alert, kind: str, data: dict[str, Any], now: float, key: str = "") -> None:
        current = self._alerts.get(alert.id)
        if current is None or not current.active:
            return
        if current.last_fired_at is not None and now * 1000 - current.last_fired_at < current.cooldown_s * 1000:
            return
        fired_ms = int(now * 1000)
        updated = replace(current, last_fired_at=fired_ms, fired_count=current.fired_count + 1,
                          active=current.active and current.repeat)
        self._alerts[alert.id] = updated  # recorded before any await: the cooldown holds within one dispatch
        message_id = f"alert:{alert.id}:{key or fired_ms}"
        firing = Firing(updated, kind, data, message_id, now)
        self.fired.append(firing)
        del self.fired[:-200]
        log.info("alert %s fired: %s", alert.id, kind)
        self.bus.publish(TOPIC_ALERT_FIRED, firing, Priority.HIGH)
        self._spawn(self._after_fire(updated, firing))

    async def _after_fire(self, alert: Alert, firing: Firing) -> None:
        if self.repo is not None:
            try:
                await self.repo.update(alert)
            except Exception:  # the firing still goes out; the count is off by one at worst
                log.exception("could not save alert %s after it fired", alert.id)
        if not alert.active:
            self._changed()
        if self.send is not None:
            try:
                await self.send(firing)
            except Exception:
                log.exception("alert %s could not be queued for sending", alert.id)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

