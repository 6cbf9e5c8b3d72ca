"""The built-in simulated market: the default venue, needing no account, key or network.

It serves the same `Venue` protocol as the real exchanges: markets with precision
and limits, tickers with 24h statistics, OHLCV history, a live stream of trades
and tickers, an order book, balances and orders (matched by `sim_orders`).
Prices come from the seeded model in `sim_model`, or from a recorded candle file
replayed at a chosen speed (`sim_replay`).

Determinism: `step(now_ms)` advances the market to `now_ms`; with the same seed,
start time and sequence of steps the market is identical. The live loop only
calls `step` on a timer, so tests drive the same code with a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np

from app.domain import (
    TIMEFRAMES,
    Balance,
    BookLevel,
    Candle,
    Market,
    Order,
    OrderBook,
    OrderRequest,
    Side,
    Ticker,
    Trade,
    split_symbol,
)
from app.market.candles import CandleArrays, CandleSeries, aggregate
from app.venues.base import OcoRequest, OrderList, StreamEvent, UnknownSymbol, VenueError, VenueUnavailable
from app.venues.sim_model import DEFAULT_INSTRUMENTS, Instrument, PriceModel
from app.venues.sim_orders import SimAccount, SimMatcher
from app.venues.sim_replay import ReplayFeed, infer_tick, load_candle_file

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
DAY_MS = 86_400_000
BOOK_DEPTH = 20
SUBSCRIBER_QUEUE = 10_000

DEFAULT_BALANCES: Mapping[str, Decimal] = {
    "USDT": Decimal("100000"),
    "BTC": Decimal("1"),
    "ETH": Decimal("10"),
}


@dataclass(frozen=True)
class SimConfig:
    seed: int = 7
    tick_interval_ms: int = 250
    history_days: int = 5
    replay_file: Path | None = None
    replay_symbol: str = "BTC/USDT"
    replay_speed: float = 60.0
    balances: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_BALANCES))
    instruments: tuple[Instrument, ...] = DEFAULT_INSTRUMENTS


def _market(inst: Instrument) -> Market:
    base, quote = split_symbol(inst.symbol)
    return Market(
        symbol=inst.symbol,
        base=base,
        quote=quote,
        price_tick=inst.price_tick,
        amount_step=inst.amount_step,
        min_amount=inst.min_amount,
        min_notional=inst.min_notional,
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.001"),
    )


class _Subscriber:
    def __init__(self, symbols: set[str]) -> None:
        self.symbols = symbols
        # None is the end of the stream (the venue was closed); an exception is a failed stream.
        self.queue: asyncio.Queue[StreamEvent | BaseException | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.dropped = 0

    def offer(self, event: StreamEvent | BaseException | None) -> None:
        if self.queue.full():
            # A consumer that cannot keep up loses the oldest events, never the newest prices.
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)


class SimVenue:
    """The simulated market. See the module docstring."""

    name = "sim"
    title = "Simulated market"
    supports_oco = True  # OCO lists are matched by sim_orders, like Binance's

    def __init__(self, config: SimConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or SimConfig()
        self._clock = clock
        self._rng = np.random.default_rng(self.config.seed)
        self._ready_lock = asyncio.Lock()
        self._ready = False
        self._replay: ReplayFeed | None = None
        self._instruments: tuple[Instrument, ...] = ()
        self._model: PriceModel | None = None
        self.markets: dict[str, Market] = {}
        self._decimals: dict[str, int] = {}
        self._series: dict[str, CandleSeries] = {}
        self._tickers: dict[str, Ticker] = {}
        self._stats24: dict[str, tuple[float, float, float, float, float]] = {}
        self._account = SimAccount(dict(self.config.balances))
        self._matcher = SimMatcher(self.markets, self._account)
        self._subscribers: list[_Subscriber] = []
        self._order_listeners: list[asyncio.Queue[Order]] = []
        self._task: asyncio.Task[None] | None = None
        self._last_ms = 0
        self._trade_seq = 0  # trade ids, unique per venue instance, so consumers can de-duplicate
        self._closed = False

    # -- start-up -------------------------------------------------------------

    def prepare(self) -> None:
        """Generate (or load) the history. CPU-bound: call it off the event loop."""
        if self._ready:
            return
        now_ms = int(self._clock() * 1000)
        minutes = self.config.history_days * 1440
        cfg = self.config
        if cfg.replay_file is not None:
            data = load_candle_file(cfg.replay_file)
            self._replay = ReplayFeed(data, min(minutes, len(data) // 2), cfg.replay_speed)
            known = {i.symbol: i for i in cfg.instruments}
            tick = infer_tick(data)
            inst = known.get(cfg.replay_symbol) or Instrument(
                cfg.replay_symbol, float(data[0, 4]), 0.5, 0.0, 1.0, tick, Decimal("0.00000001"), Decimal("0.00000001"), Decimal(0)
            )
            if inst.price_tick > tick:  # the recording is finer than the listed market: show what was recorded
                inst = Instrument(inst.symbol, inst.start_price, inst.annual_vol, inst.daily_quote_volume, inst.market_corr, tick, inst.amount_step, inst.min_amount, inst.min_notional)
            self._instruments = (inst,)
            hist = self._replay.history
            arrays = CandleArrays(hist[:, 0].astype(np.int64), hist[:, 1].copy(), hist[:, 2].copy(), hist[:, 3].copy(), hist[:, 4].copy(), hist[:, 5].copy())
            self._install(inst, arrays)
            self._last_ms = now_ms
        else:
            self._instruments = cfg.instruments
            self._model = PriceModel(self._instruments, self._rng)
            bars = self._model.history(minutes)
            live_bucket = now_ms - now_ms % MINUTE_MS
            ts = live_bucket - MINUTE_MS * np.arange(minutes, 0, -1, dtype=np.int64)
            for k, inst in enumerate(self._instruments):
                self._install(inst, CandleArrays(ts, bars.open[:, k], bars.high[:, k], bars.low[:, k], bars.close[:, k], bars.volume[:, k]))
            self._last_ms = now_ms
        self._ready = True

    def _install(self, inst: Instrument, arrays: CandleArrays) -> None:
        market = _market(inst)
        self.markets[inst.symbol] = market
        self._decimals[inst.symbol] = market.price_decimals
        # Room for the history plus two weeks of live running before the oldest minute is dropped.
        series = CandleSeries("1m", len(arrays) + 14 * 1440)
        series.load_arrays(arrays)
        self._series[inst.symbol] = series
        self._refresh_stats(inst.symbol)
        last = float(arrays.close[-1])
        self._tickers[inst.symbol] = self._ticker(inst.symbol, int(arrays.ts[-1]) + MINUTE_MS - 1, last, Side.BUY)

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                try:
                    await asyncio.to_thread(self.prepare)
                except ValueError as exc:  # a bad replay file: its message says what to do
                    raise VenueError(str(exc)) from None

    # -- the market's clock ------------------------------------------------------

    def step(self, now_ms: int) -> list[StreamEvent]:
        """Advance the market to `now_ms`; return the trades and tickers that happened."""
        if not self._ready:
            self.prepare()
        prev_ms = self._last_ms
        dt = (now_ms - prev_ms) / 1000.0
        if dt <= 0:
            return []
        self._last_ms = now_ms
        events: list[StreamEvent] = []
        if self._replay is not None:
            symbol = self._instruments[0].symbol
            for ts, price, amount in self._replay.advance(dt):
                events.extend(self._print(symbol, ts, price, amount))
            return events
        model = self._model
        assert model is not None
        if now_ms // MINUTE_MS != prev_ms // MINUTE_MS:
            model.roll_minute()
        prices = model.step(dt)
        sizes = model.trade_sizes(dt)
        trading = model.trades_happen()
        for k, inst in enumerate(self._instruments):
            if trading[k]:
                size = max(float(sizes[k]), float(inst.amount_step))  # a print trades at least one step
                events.extend(self._print(inst.symbol, now_ms, float(prices[k]), size))
        return events

    def _print(self, symbol: str, ts: int, price: float, amount: float) -> list[StreamEvent]:
        """One trade prints: update candles, the ticker and resting orders."""
        market = self.markets[symbol]
        d = self._decimals[symbol]
        price = round(price, d)
        step = float(market.amount_step)
        amount = round(amount / step) * step  # a replayed print may carry nothing: see sim_replay
        prev = self._tickers[symbol].last
        p_dec = Decimal(f"{price:.{d}f}")
        side = Side.BUY if p_dec >= prev else Side.SELL
        if self._series[symbol].apply_trade(ts, price, amount):
            self._refresh_stats(symbol)
        ticker = self._ticker(symbol, ts, price, side)
        self._tickers[symbol] = ticker
        self._trade_seq += 1
        trade = Trade(symbol, ts, p_dec, Decimal(f"{amount:.{market.amount_decimals}f}"), side,
                      id=str(self._trade_seq), venue=self.name)
        if self._matcher.open_orders(symbol):
            for order in self._matcher.on_print(symbol, p_dec, self._book(symbol), ts):
                self._emit_order(order)
        return [trade, ticker]

    def _refresh_stats(self, symbol: str) -> None:
        """24h statistics of the closed minutes, recomputed once a minute, not per tick."""
        a = self._series[symbol].arrays()
        if len(a) < 2:
            self._stats24[symbol] = (float(a.open[0]), float(a.high[0]), float(a.low[0]), 0.0, 0.0)
            return
        start = int(a.ts[-1]) - DAY_MS + MINUTE_MS
        i = int(np.searchsorted(a.ts, start))
        closed = slice(i, len(a) - 1)
        vol = a.volume[closed]
        self._stats24[symbol] = (
            float(a.open[i]),
            float(a.high[closed].max(initial=a.high[-1])),
            float(a.low[closed].min(initial=a.low[-1])),
            float(vol.sum()),
            float((vol * a.close[closed]).sum()),
        )

    def _ticker(self, symbol: str, ts: int, price: float, side: Side) -> Ticker:
        market = self.markets[symbol]
        d = self._decimals[symbol]
        tick = float(market.price_tick)
        spread = max(tick, round(price * 2e-6 / tick) * tick)
        # The print happened at the touch on the aggressor's side.
        bid, ask = (price - spread, price) if side is Side.BUY else (price, price + spread)
        o, h, low, vol, qvol = self._stats24[symbol]
        live = self._series[symbol].last()
        if live is not None:
            _, _, lh, ll, _, lv = live
            h, low, vol, qvol = max(h, lh), min(low, ll), vol + lv, qvol + lv * price
        q = f".{d}f"
        return Ticker(
            symbol=symbol,
            ts=ts,
            last=Decimal(format(price, q)),
            bid=Decimal(format(bid, q)),
            ask=Decimal(format(ask, q)),
            open_24h=Decimal(format(o, q)),
            high_24h=Decimal(format(h, q)),
            low_24h=Decimal(format(low, q)),
            base_volume_24h=Decimal(format(vol, ".8f")).normalize(),
            quote_volume_24h=Decimal(format(qvol, ".2f")),
            venue=self.name,
        )

    def _book(self, symbol: str) -> OrderBook:
        """A synthetic book around the touch, stable within a second so repeated reads agree."""
        market = self.markets[symbol]
        t = self._tickers[symbol]
        assert t.bid is not None and t.ask is not None
        idx = list(self.markets).index(symbol)
        rng = np.random.default_rng([self.config.seed, idx, t.ts // 1000])
        price = float(t.last)
        gap = max(market.price_tick, Decimal(str(round(price * 1e-5 / float(market.price_tick)))) * market.price_tick)
        inst = self._instruments[idx]
        depth = max(inst.daily_quote_volume, 1e6) / 1440.0 / max(price, 1e-12) * 0.04
        sizes = depth * (1 + 0.35 * np.arange(BOOK_DEPTH)) * (0.6 + 0.8 * rng.random((2, BOOK_DEPTH)))
        step = market.amount_step

        def level(p: Decimal, amount: float) -> BookLevel:
            return BookLevel(p, max(step, (Decimal(f"{amount:.8f}") // step) * step))

        bids = tuple(level(t.bid - gap * i, sizes[0, i]) for i in range(BOOK_DEPTH))
        asks = tuple(level(t.ask + gap * i, sizes[1, i]) for i in range(BOOK_DEPTH))
        return OrderBook(symbol, t.ts, tuple(b for b in bids if b.price > 0), asks)

    # -- the live loop ------------------------------------------------------------

    async def _run(self) -> None:
        interval = self.config.tick_interval_ms / 1000.0
        while not self._closed:
            await asyncio.sleep(interval)
            try:
                events = self.step(int(self._clock() * 1000))
            except Exception as exc:
                # Fail the streams instead of going quiet: the feed then says so and reconnects.
                log.exception("the simulated market failed to advance")
                for sub in self._subscribers:
                    sub.offer(VenueUnavailable(f"the simulated market stopped: {exc}"))
                return
            for sub in self._subscribers:
                for ev in events:
                    if ev.symbol in sub.symbols:
                        sub.offer(ev)

    async def watch(self, symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:  # type: ignore[override]
        await self._ensure_ready()
        missing = [s for s in symbols if s not in self.markets]
        if missing:
            raise UnknownSymbol(self._unknown(missing[0]))
        if self._closed:
            return
        sub = _Subscriber(set(symbols))
        self._subscribers.append(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sim-market")
        try:
            while (event := await sub.queue.get()) is not None:
                if isinstance(event, BaseException):
                    raise event
                yield event
        finally:
            self._subscribers.remove(sub)

    async def watch_orders(self) -> AsyncIterator[Order]:
        """Order updates (fills of resting orders, triggered stops) as they happen; ends when the venue closes."""
        if self._closed:
            return
        queue: asyncio.Queue[Order | None] = asyncio.Queue()
        self._order_listeners.append(queue)
        try:
            while (order := await queue.get()) is not None:
                yield order
        finally:
            self._order_listeners.remove(queue)

    def _emit_order(self, order: Order) -> None:
        for queue in self._order_listeners:
            queue.put_nowait(order)

    async def close(self) -> None:
        self._closed = True
        # Wake every watcher so its stream ends, as the Venue protocol promises.
        for sub in self._subscribers:
            sub.offer(None)
        for queue in self._order_listeners:
            queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # -- the Venue protocol ---------------------------------------------------------

    def _unknown(self, symbol: str) -> str:
        return f"The simulated market does not list {symbol}. Listed: {', '.join(self.markets)}."

    def _check(self, symbol: str) -> None:
        if symbol not in self.markets:
            raise UnknownSymbol(self._unknown(symbol))

    async def load_markets(self) -> dict[str, Market]:
        await self._ensure_ready()
        return dict(self.markets)

    async def fetch_ticker(self, symbol: str) -> Ticker:
        await self._ensure_ready()
        self._check(symbol)
        return self._tickers[symbol]

    async def fetch_tickers(self, symbols: Sequence[str]) -> dict[str, Ticker]:
        await self._ensure_ready()
        return {s: self._tickers[s] for s in symbols if s in self._tickers}

    async def fetch_ohlcv_arrays(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> CandleArrays:
        """OHLCV as float arrays, for charts: no Decimal conversion of thousands of bars."""
        await self._ensure_ready()
        self._check(symbol)
        if timeframe not in TIMEFRAMES:
            raise VenueError(f"Timeframe {timeframe} is not offered; choose one of {', '.join(TIMEFRAMES)}.")
        a = self._series[symbol].arrays()
        if timeframe != "1m":
            a = aggregate(a, timeframe)
        start = int(np.searchsorted(a.ts, since)) if since is not None else 0
        end = len(a) if limit is None else min(len(a), start + limit if since is not None else len(a))
        if limit is not None and since is None:
            start = max(0, end - limit)
        return CandleArrays(*(x[start:end].copy() for x in (a.ts, a.open, a.high, a.low, a.close, a.volume)))

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: int | None = None, limit: int | None = None
    ) -> list[Candle]:
        a = await self.fetch_ohlcv_arrays(symbol, timeframe, since, limit)
        q = f".{self._decimals[symbol]}f"
        return [
            Candle(int(a.ts[i]), Decimal(format(a.open[i], q)), Decimal(format(a.high[i], q)), Decimal(format(a.low[i], q)), Decimal(format(a.close[i], q)), Decimal(format(a.volume[i], ".8f")))
            for i in range(len(a))
        ]

    async def fetch_order_book(self, symbol: str, limit: int = 20) -> OrderBook:
        await self._ensure_ready()
        self._check(symbol)
        book = self._book(symbol)
        return OrderBook(symbol, book.ts, book.bids[:limit], book.asks[:limit])

    async def fetch_balance(self) -> dict[str, Balance]:
        await self._ensure_ready()
        return self._account.balances()

    async def create_order(self, request: OrderRequest) -> Order:
        await self._ensure_ready()
        self._check(request.symbol)
        ticker = self._tickers[request.symbol]
        return self._matcher.submit(request, self._book(request.symbol), ticker.last, ticker.ts)

    async def cancel_order(self, order_id: str, symbol: str) -> Order:
        await self._ensure_ready()
        return self._matcher.cancel(order_id)

    async def create_oco(self, request: OcoRequest) -> OrderList:
        await self._ensure_ready()
        self._check(request.symbol)
        ticker = self._tickers[request.symbol]
        return self._matcher.submit_oco(request, self._book(request.symbol), ticker.last, ticker.ts)

    async def cancel_order_list(self, list_client_id: str, symbol: str) -> OrderList:
        await self._ensure_ready()
        return self._matcher.cancel_list(list_client_id)

    async def fetch_order(self, order_id: str, symbol: str) -> Order:
        await self._ensure_ready()
        return self._matcher.get(order_id)

    async def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> Order:
        await self._ensure_ready()
        return self._matcher.get_by_client_id(client_order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        await self._ensure_ready()
        return self._matcher.open_orders(symbol)
