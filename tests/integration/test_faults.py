"""Network faults against local exchange servers: the guard's breaker, retries, timeouts, and streams that
drop, go silent or send garbage. Real ccxt, real websockets, real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from app.bus import EventBus
from app.domain import OrderRequest, OrderStatus, OrderType, Side
from app.market.feed import ConnectionState
from app.paths import resolve_paths
from app.resilience.guard import HEALTH_TOPIC, Guard, GuardConfig
from app.runtime import Runtime
from app.settings import Settings, WatchlistSettings
from app.venues.base import InsufficientFunds, OrderOutcomeUnknown, VenueUnavailable
from tests.integration.test_exchanges import make_venue
from tests.servers.binance import BinanceServer

FAST_GUARD = dict(retry_first_delay=0.01, retry_max_delay=0.05, call_timeout=2.0)


def guard(bus: EventBus | None = None, **overrides) -> Guard:
    return Guard("exchange:binance", GuardConfig(**{**FAST_GUARD, **overrides}), bus=bus)


async def test_breaker_opens_after_five_server_errors_fails_fast_and_recovers() -> None:
    bus = EventBus()
    states: list[str] = []
    bus.subscribe(HEALTH_TOPIC, lambda e: states.append(e.payload.state))
    await bus.start()
    async with BinanceServer() as srv:
        g = guard(bus, failure_threshold=5, reset_timeout=0.5, half_open_calls=1, retry_attempts=1)
        venue = make_venue("binance", srv, keys=False, guard=g)
        try:
            await venue.load_markets()
            srv.faults.next_status(500, times=5)
            for _ in range(5):
                with pytest.raises(VenueUnavailable):
                    await venue.fetch_ticker("BTC/USDT")
            assert g.health().state == "open" and g.health().failures == 5
            sent = len(srv.requests)
            with pytest.raises(VenueUnavailable, match="paused until"):
                await venue.fetch_ticker("BTC/USDT")
            assert len(srv.requests) == sent  # failing fast: nothing reached the exchange
            await asyncio.sleep(0.6)
            ticker = await venue.fetch_ticker("BTC/USDT")  # the half-open probe succeeds
            assert ticker.last > 0 and g.health().state == "closed"
        finally:
            await venue.close()
    await bus.drain()
    assert states == ["open", "half_open", "closed"]
    await bus.stop()


async def test_429_with_retry_after_opens_the_breaker_for_that_long() -> None:
    async with BinanceServer() as srv:
        g = guard(retry_attempts=1)
        venue = make_venue("binance", srv, keys=False, guard=g)
        try:
            await venue.load_markets()
            srv.faults.rate_limit(retry_after=2)
            before = time.time()
            with pytest.raises(VenueUnavailable, match="limiting our requests"):
                await venue.fetch_ticker("BTC/USDT")
            health = g.health()
            assert health.state == "open" and health.opened_until is not None
            assert 1.5 <= health.opened_until - before <= 3.0
        finally:
            await venue.close()


async def test_idempotent_calls_are_retried_but_an_order_is_sent_once() -> None:
    async with BinanceServer() as srv:
        venue = make_venue("binance", srv, guard=guard(retry_attempts=3))
        try:
            await venue.load_markets()
            srv.faults.next_status(503, times=2, path="/api/v3/ticker/24hr")
            ticker = await venue.fetch_ticker("BTC/USDT")
            assert ticker.last > 0
            assert sum(r.path == "/api/v3/ticker/24hr" for r in srv.requests) == 3
            srv.faults.next_status(503, times=1, path="/api/v3/order")
            request = OrderRequest("BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal("0.01"), "mt" + uuid.uuid4().hex[:16],
                                   price=(ticker.last * Decimal("0.9")).quantize(Decimal("0.01")))
            with pytest.raises(VenueUnavailable):
                await venue.create_order(request)
            assert sum(r.path == "/api/v3/order" and r.method == "POST" for r in srv.requests) == 1
        finally:
            await venue.close()


async def test_rejected_orders_never_trip_the_breaker() -> None:
    async with BinanceServer() as srv:
        g = guard(failure_threshold=2)
        venue = make_venue("binance", srv, guard=g)
        try:
            ticker = await venue.fetch_ticker("BTC/USDT")
            for _ in range(4):
                request = OrderRequest("BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal("50"), "mt" + uuid.uuid4().hex[:16],
                                       price=ticker.last.quantize(Decimal("0.01")))
                with pytest.raises(InsufficientFunds, match="balance is too low"):
                    await venue.create_order(request)
            assert g.health().state == "closed" and g.health().failures == 0
        finally:
            await venue.close()


async def test_an_order_whose_answer_is_lost_is_unknown_and_found_by_its_client_id() -> None:
    async with BinanceServer() as srv:
        venue = make_venue("binance", srv, guard=guard(call_timeout=0.5))
        try:
            ticker = await venue.fetch_ticker("BTC/USDT")
            cid = "mt" + uuid.uuid4().hex[:16]
            request = OrderRequest("BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal("0.01"), cid,
                                   price=(ticker.last * Decimal("0.9")).quantize(Decimal("0.01")))
            srv.faults.lose_answer(1.0, times=1, path="/api/v3/order")
            with pytest.raises(OrderOutcomeUnknown) as lost:
                await venue.create_order(request)
            assert lost.value.client_order_id == cid and "being checked" in str(lost.value)
            found = await venue.fetch_order_by_client_id(cid, "BTC/USDT")
            assert found.status is OrderStatus.OPEN and found.amount == Decimal("0.01")
        finally:
            await venue.close()


def _runtime(tmp_path: Path, venue) -> Runtime:
    settings = Settings(watchlist=WatchlistSettings(symbols=("BTC/USDT",)))
    return Runtime(settings, resolve_paths(tmp_path / "settings.toml", tmp_path / "data"), venue=venue)


async def _wait(predicate, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_a_stream_that_keeps_dropping_comes_back_and_the_candles_stay_continuous(tmp_path: Path) -> None:
    from tests.servers.test_servers import FastClock

    async with BinanceServer(rate=20.0, clock=FastClock(60)) as srv:  # one wall second = one market minute
        venue = make_venue("binance", srv, keys=False)
        runtime = _runtime(tmp_path, venue)
        fetched_at: list[int] = []  # the market time each backfill asked the exchange for its candles
        backfill = runtime.backfill

        async def recorded_backfill() -> None:
            fetched_at.append(srv.now_ms())
            await backfill()

        runtime.backfill = recorded_backfill  # type: ignore[method-assign]
        try:
            await runtime.start()
            series = await runtime.load_chart("BTC/USDT", "1m")
            runtime.feed.backoff_base = 0.05
            srv.ws_faults.close_every(1.5, abort=True)  # a network cut every 1.5 s, no close frame
            await _wait(lambda: runtime.feed.reconnects >= 3, 30)
            srv.ws_faults.close_every(None)
            await _wait(lambda: runtime.feed.state is ConnectionState.LIVE, 10)
            await _wait(lambda: not any(t.get_name().startswith("backfill") for t in runtime.feed._tasks), 10)
            # Candles up to the last backfill came from the exchange's REST klines; later ones are being
            # built from this server's sampled trade stream, which need not match its klines exactly.
            # The cutoff is the last backfill's own fetch time (minus the candle then still open), not
            # "now": on a loaded machine the check can run many market minutes after the backfill.
            cutoff = fetched_at[-1] - 60_000
            mine = series.arrays()
            steps = np.diff(mine.ts)
            assert (steps == 60_000).all(), f"gaps or duplicates at {mine.ts[1:][steps != 60_000][:5]}"
            rest = await venue.fetch_ohlcv_arrays("BTC/USDT", "1m", since=int(mine.ts[-12]))
            common = np.intersect1d(mine.ts[mine.ts <= cutoff], rest.ts)
            assert len(common) >= 3
            i, j = np.searchsorted(mine.ts, common), np.searchsorted(rest.ts, common)
            assert np.allclose(mine.close[i], rest.close[j]) and np.allclose(mine.high[i], rest.high[j])
        finally:
            await runtime.stop()


async def test_a_silent_stream_is_reopened_and_malformed_frames_are_survived(tmp_path: Path, caplog) -> None:
    async with BinanceServer(rate=20.0) as srv:
        venue = make_venue("binance", srv, keys=False, silence=1.5)  # silent for 1.5 ticker intervals: reopen
        runtime = _runtime(tmp_path, venue)
        caplog.set_level(logging.WARNING)
        try:
            await runtime.start()
            await _wait(lambda: runtime.feed.state is ConnectionState.LIVE, 10)
            srv.ws_faults.send_malformed(5)
            events = runtime.feed.events
            await _wait(lambda: venue.stream_stats.malformed.get("json", 0) >= 5 and runtime.feed.events > events + 5, 10)
            assert runtime.feed.state is ConnectionState.LIVE
            assert sum("malformed frame" in r.getMessage() for r in caplog.records) == 1  # once per kind
            connects = venue.stream_stats.connects
            srv.ws_faults.go_silent()
            await _wait(lambda: venue.stream_stats.connects > connects, 15)
            srv.ws_faults.speak()
            events = runtime.feed.events
            await _wait(lambda: runtime.feed.events > events + 3, 10)
        finally:
            await runtime.stop()


async def test_refused_connections_are_retried_until_the_exchange_is_back(tmp_path: Path) -> None:
    async with BinanceServer(rate=20.0) as srv:
        venue = make_venue("binance", srv, keys=False)
        runtime = _runtime(tmp_path, venue)
        try:
            await runtime.start()
            runtime.feed.backoff_base = 0.05
            runtime.feed.backoff_cap = 0.3
            await _wait(lambda: runtime.feed.state is ConnectionState.LIVE, 10)
            await srv.ws_faults.refuse()
            await _wait(lambda: runtime.feed.state is ConnectionState.RECONNECTING, 10)
            assert "Could not connect" in runtime.state.connection.detail or runtime.state.connection.detail
            await asyncio.sleep(1.0)
            await srv.ws_faults.resume()
            await _wait(lambda: runtime.feed.state is ConnectionState.LIVE, 15)
        finally:
            await runtime.stop()


async def test_a_server_that_stops_answering_pings_is_disconnected_and_reconnected(tmp_path: Path) -> None:
    from dataclasses import replace as dc_replace

    async with BinanceServer(rate=20.0) as srv:
        venue = make_venue("binance", srv, keys=False)
        venue.config = dc_replace(venue.config, ping_interval_s=0.3)
        runtime = _runtime(tmp_path, venue)
        try:
            await runtime.start()
            runtime.feed.backoff_base = 0.05
            await _wait(lambda: runtime.feed.state is ConnectionState.LIVE, 10)
            connects = venue.stream_stats.connects
            srv.ws_faults.drop_pongs(True)
            await _wait(lambda: venue.stream_stats.connects > connects, 10)  # pong overdue: closed and reopened
            srv.ws_faults.drop_pongs(False)
            await _wait(lambda: runtime.feed.state is ConnectionState.LIVE, 10)
        finally:
            await runtime.stop()
