"""MetaTrader 5 through MetaQuotes' `MetaTrader5` Python package.

The package is a Windows-only extension that talks over IPC to a MetaTrader 5
terminal running on the same machine, logged in to a broker account. Every call
blocks, and the package is not thread-safe, so every call runs on ONE dedicated
worker thread (`ThreadPoolExecutor(max_workers=1)`) through `run_in_executor`;
nothing of the package ever runs on the event loop.

What the package offers, as MetaQuotes documents it
(https://www.mql5.com/en/docs/python_metatrader5, pages `mt5initialize_py`,
`mt5lasterror_py`, `mt5accountinfo_py`, `mt5symbolinfo_py`, `mt5symbolinfotick_py`,
`mt5copyratesfrompos_py`, `mt5ordersend_py`, `mt5ordersget_py`,
`mt5historyordersget_py`, `mt5historydealsget_py`; read through the stored pages
and the full English text kept as docstrings in lucas-campagna/mt5linux
`mt5linux/__init__.py`, cross-checked with its `mt5linux/types.py`):
- `initialize(path, login=, password=, server=, timeout=60000 ms, portable=False)`
  -> bool; `shutdown()`; `last_error()` -> `(code, message)`, codes RES_S_OK 1,
  RES_E_FAIL -1, RES_E_INVALID_PARAMS -2, RES_E_NOT_FOUND -4, RES_E_AUTH_FAILED -6,
  RES_E_INTERNAL_FAIL_* -10000..-10005 (IPC send/receive/init/connect/timeout).
- Every other function returns a named tuple (or a tuple of them), or None on an
  error, with the reason in `last_error()`. Field names and order, as printed by
  `_asdict()` in MetaQuotes' examples: `AccountInfo(login, trade_mode, leverage, ...,
  balance, credit, profit, equity, margin, margin_free, margin_level, ..., name,
  server, currency, company)`; `SymbolInfo` (96 fields: ..., digits, ..., filling_mode,
  ..., point, ..., trade_tick_size, trade_contract_size, ..., volume_min, volume_max,
  volume_step, ..., currency_base, currency_profit, ..., name, page, path);
  `Tick(time, bid, ask, last, volume, time_msc, flags, volume_real)`;
  `OrderSendResult(retcode, deal, order, volume, price, bid, ask, comment,
  request_id, retcode_external, request)` whose `request` is a
  `TradeRequest(action, magic, order, symbol, volume, price, stoplimit, sl, tp,
  deviation, type, type_filling, type_time, expiration, comment, position, position_by)`;
  `TradeOrder(ticket, time_setup, time_setup_msc, time_done, time_done_msc,
  time_expiration, type, type_time, type_filling, state, magic, position_id,
  position_by_id, reason, volume_initial, volume_current, price_open, sl, tp,
  price_current, price_stoplimit, symbol, comment, external_id)` (MetaQuotes' examples
  do not pin where volume_initial/volume_current and price_stoplimit sit, and
  mt5linux/types.py lists volume_current first and price_stoplimit after price_open;
  this module reads every field by name, never by position); `TradeDeal(ticket, order, time, time_msc,
  type, entry, magic, position_id, reason, volume, price, commission, swap, profit,
  fee, symbol, comment, external_id)`.
- `copy_rates_from_pos(symbol, timeframe, start_pos, count)` and
  `copy_rates_range(symbol, timeframe, date_from, date_to)` return a numpy structured
  array with the columns time (s, UTC), open, high, low, close, tick_volume, spread,
  real_volume; position 0 is the current bar. Dates are datetimes or seconds since 1970.
- Constants: TIMEFRAME_M1 1, M5 5, M15 15, H1 16385, H4 16388, D1 16408;
  TRADE_ACTION_DEAL 1, PENDING 5, SLTP 6, MODIFY 7, REMOVE 8; ORDER_TYPE_BUY 0, SELL 1,
  BUY_LIMIT 2, SELL_LIMIT 3, BUY_STOP 4, SELL_STOP 5, BUY_STOP_LIMIT 6,
  SELL_STOP_LIMIT 7; ORDER_FILLING_FOK 0, IOC 1, RETURN 2; ORDER_TIME_GTC 0;
  ORDER_STATE_STARTED 0 .. REQUEST_CANCEL 9. They are always read from the module.
- Trade server return codes (https://www.mql5.com/en/docs/constants/errorswarnings/
  enum_trade_return_codes): 10004 requote, 10006 rejected, 10008 placed, 10009 done,
  10010 done partially, 10013 invalid request, 10014 invalid volume, 10015 invalid
  price, 10018 market closed, 10019 no money, 10027 autotrading disabled by the
  terminal, 10031 no connection, ... (all in `RETCODE_MEANINGS`).
- `order_send` returns None when the request could not be passed on (the Russian
  page says so explicitly: "В случае ошибки возвращает None").
- `SymbolInfo.filling_mode` is MQL5's SYMBOL_FILLING_MODE flags: 1 = FOK allowed, 2 = IOC
  allowed (MQL5 docs, "Symbol Properties"); the Python package exports no names for them.
- Comment length: the package documentation does not state a limit for
  `TradeRequest.comment`; MQL4's OrderSend notes that the server may change the end
  of a comment, and integrators document 31 characters as the maximum
  (Qoyyuum/mcp-metatrader5-server PR #32: "Order comment (optional, max 31 chars)").
  Not confirmed by MetaQuotes' pages: treated as a hard limit here.
- Not documented, from the package's observed behaviour: rates dtypes (time int64,
  prices float64, tick_volume/real_volume uint64, spread int32).

Decisions (others must follow):
- Symbols are unified as BASE/QUOTE from `currency_base`/`currency_profit`
  (EURUSD -> EUR/USD, XAUUSD -> XAU/USD, BTCUSD -> BTC/USD). When that pair is
  meaningless (index CFDs where both are USD) or already taken by a better match
  (EURUSD wins EUR/USD over EURUSD.m), the MT5 name is the base: `US500/USD`,
  `EURUSD.m/USD`. `mt5_name(symbol)` gives the terminal's name back.
- Amounts are LOTS, as MT5 trades them: `amount_step` is `volume_step`,
  `min_amount`/`max_amount` are `volume_min`/`volume_max`. One lot is
  `contract_size(symbol)` units of the base (100 000 EUR, 100 oz of gold): notional
  checks must multiply by it. Fees are 0 in `Market`: MT5 commissions are per broker
  and only visible on deals (they are reported on fills).
- Floats become Decimal through a fixed-point string at the symbol's precision:
  prices at `digits` (1.1000000000000001 -> Decimal('1.10000')), volumes at
  `volume_step`'s decimals, money at the account's `currency_digits`.
- Tickers: `last` is the last deal price when the symbol has one, else the bid
  (forex and CFDs have no last; MT5 charts them by bid). `ts` is `time_msc`, taken as
  UTC as MetaQuotes documents (some brokers stamp in their server's zone: not corrected).
  No 24h statistics: MT5 has session values only.
- OHLCV: the bar volume is `real_volume` when the series has any, else
  `tick_volume` (forex/CFD brokers report no real volume); one rule per series so
  units never mix within a chart.
- Order book: MT5 gives depth only after `market_book_add` on symbols whose broker
  streams it. The book here is the top of book from the tick: one level each side
  with amount 0 (the size is unknown).
- Balance: one entry in the account currency, free = `margin_free`, used = `margin`
  (so total = equity). Open positions are not balances.
- Orders: the client order id goes into `comment` (<= 31 printable ASCII
  characters, else the order is refused before sending: a truncated id could
  collide); `magic` is Meridian's stable id (`MT5Config.magic`, default
  `DEFAULT_MAGIC`) so lookups by client id only match Meridian's orders. Market
  orders are TRADE_ACTION_DEAL at the current ask/bid with `deviation_points`
  slippage and the fill policy the symbol allows (FOK, else IOC); limit orders are
  TRADE_ACTION_PENDING GTC with ORDER_FILLING_RETURN (MT5 refuses a buy limit at or
  above the ask, so they are always passive: `post_only` holds by construction);
  stop-limit orders are BUY/SELL_STOP_LIMIT with price = stop, stoplimit = limit.
- Retcodes: 10009/10008 -> FILLED (market) or OPEN (pending); 10010 -> partially
  filled (a market IOC remainder is cancelled: CANCELED with `filled`); 10019 ->
  InsufficientFunds; 10011/10012 and a None result -> OrderOutcomeUnknown (reconcile
  by client id, never resend); 10024/10031 -> VenueUnavailable (not executed);
  every other code -> OrderRejected with the code's meaning as a sentence.
- Lookups by client id search the active orders, then the history of the last
  `history_days` days (to now + 2 days: broker server clocks run ahead of UTC).
- `watch` polls `symbol_info_tick` on the worker every `poll_interval_ms` and yields
  a Ticker only when `time_msc` changed: MT5 has no push stream for Python.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import importlib
import logging
import math
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeVar

import numpy as np

from app.domain import (
    TIMEFRAMES,
    ZERO,
    Balance,
    BookLevel,
    Candle,
    Fill,
    Market,
    Order,
    OrderBook,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Ticker,
    TimeInForce,
)
from app.market.candles import CandleArrays
from app.resilience.errors import CallTimeoutError, CircuitOpenError, FailureKind, ResilienceError
from app.resilience.guard import Guard, GuardConfig
from app.venues.base import (
    InsufficientFunds,
    OrderNotFound,
    OrderOutcomeUnknown,
    OrderRejected,
    StreamEvent,
    UnknownSymbol,
    VenueError,
    VenueUnavailable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

UNAVAILABLE = (
    "MetaTrader 5 runs only on Windows, beside a running MetaTrader 5 terminal. "
    "Choose another venue, or run Meridian on Windows with the terminal open and logged in."
)
MAX_COMMENT = 31  # characters of TradeRequest.comment the terminal keeps (see the module docstring)
DEFAULT_MAGIC = 0x4D5244  # "MRD": marks orders placed by Meridian; never change it for an account in use
CHART_HISTORY = 1500  # bars fetched when neither since nor limit is given
SERVER_CLOCK_SLACK_S = 2 * 86_400

SYMBOL_FILLING_FOK = 1  # bits of SymbolInfo.filling_mode (MQL5 SYMBOL_FILLING_MODE)
SYMBOL_FILLING_IOC = 2
RES_S_OK = 1
RES_E_NOT_FOUND = -4

_TIMEFRAME_CONSTANTS = {
    "1m": "TIMEFRAME_M1", "5m": "TIMEFRAME_M5", "15m": "TIMEFRAME_M15",
    "1h": "TIMEFRAME_H1", "4h": "TIMEFRAME_H4", "1d": "TIMEFRAME_D1",
}

RETCODE_MEANINGS: dict[int, str] = {
    10004: "the price moved before the broker could fill it (requote)",
    10006: "the broker rejected the request",
    10007: "the request was cancelled by the trader",
    10011: "the broker could not process the request",
    10012: "the request timed out at the broker",
    10013: "the broker found the request invalid",
    10014: "the volume is not allowed for this symbol (check the minimum, maximum and lot step)",
    10015: "the price is not allowed (a buy limit must be below the ask, a sell limit above the bid, "
           "on the symbol's price step)",
    10016: "the stop levels are too close to the market",
    10017: "trading is disabled for this symbol or account",
    10018: "the market is closed",
    10019: "the account does not have enough free margin",
    10020: "the prices changed",
    10021: "the broker has no quote to fill the order",
    10022: "the expiry date is invalid",
    10023: "the order's state changed meanwhile",
    10024: "too many requests were sent; wait a moment",
    10025: "the request changes nothing",
    10026: "the broker's server has disabled automated trading",
    10027: "automated trading is disabled in the terminal: switch on Algo Trading in the MetaTrader 5 toolbar",
    10028: "the request is locked for processing",
    10029: "the order or position is frozen (too close to the market to change)",
    10030: "the broker does not allow this fill policy for the symbol",
    10031: "the terminal has no connection to the broker's trade server",
    10032: "this operation is allowed only on live accounts",
    10033: "the account has reached its limit of pending orders",
    10034: "the account has reached its volume limit for this symbol",
    10035: "the order type is not allowed",
    10036: "the position has already been closed",
    10038: "the close volume exceeds the position",
    10039: "a close order already exists for this position",
    10040: "the account has reached its limit of open positions",
    10041: "the pending order's activation was rejected and the order cancelled",
    10042: "only long positions are allowed on this symbol",
    10043: "only short positions are allowed on this symbol",
    10044: "only closing positions is allowed on this symbol",
    10045: "positions must be closed in FIFO order on this account",
    10046: "opposite positions on one symbol are not allowed on this account",
}
RETCODE_DONE = frozenset({10008, 10009})
RETCODE_PARTIAL = 10010
RETCODE_NO_MONEY = 10019
RETCODE_OUTCOME_UNKNOWN = frozenset({10011, 10012})
RETCODE_NOT_EXECUTED_TRY_LATER = frozenset({10024, 10031})


@dataclass(frozen=True)
class MT5Config:
    """How to reach the terminal. The password comes from the keyring, never from settings."""

    path: str | None = None  # terminal64.exe; None: the package finds the terminal itself
    login: int | None = None  # None: the account the terminal is logged in to
    password: str = field(default="", repr=False)
    server: str | None = None
    timeout_ms: int = 60_000
    portable: bool = False
    poll_interval_ms: int = 250  # watch(): how often symbol_info_tick is read
    magic: int = DEFAULT_MAGIC
    deviation_points: int = 20  # market orders: accepted slippage in points
    symbols: str | None = None  # symbols_get group filter, e.g. "*,!*.m"; None: every symbol
    history_days: int = 30  # how far back lookups by client id search


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """What this module needs to know about one MT5 symbol beyond its `Market`."""

    name: str  # the terminal's name, e.g. EURUSD
    digits: int
    volume_decimals: int
    filling_mode: int
    contract_size: Decimal
    selected: bool


# --------------------------------------------------------------------------- conversions (pure)


def price_dec(value: float, digits: int) -> Decimal | None:
    """A price float at the symbol's `digits`: 1.1000000000000001 -> Decimal('1.10000')."""
    if value is None or not math.isfinite(value):
        return None
    return Decimal(format(value + 0.0, f".{max(0, digits)}f"))  # + 0.0: no "-0.00000"


def step_decimals(step: float) -> int:
    """Decimals of a step such as volume_step 0.01 -> 2 (through the float's shortest repr)."""
    if not step or not math.isfinite(step) or step <= 0:
        return 8
    return min(8, max(0, -Decimal(repr(float(step))).normalize().as_tuple().exponent))  # type: ignore[operator]


def volume_dec(value: float, decimals: int) -> Decimal:
    return Decimal(format(value + 0.0 if math.isfinite(value) else 0.0, f".{decimals}f"))


def build_markets(infos: Sequence[Any],
                  disabled_trade_mode: int = 0) -> tuple[dict[str, Market], dict[str, SymbolSpec]]:
    """MT5 SymbolInfo tuples -> unified markets and their specs (see the module docstring)."""

    def rank(s: Any) -> tuple[int, int, str]:
        exact = s.name == f"{s.currency_base}{s.currency_profit}"
        return (0 if exact else 1, 0 if s.visible else 1, s.name)

    markets: dict[str, Market] = {}
    specs: dict[str, SymbolSpec] = {}
    for s in sorted(infos, key=rank):
        base, quote = (s.currency_base or "").strip(), (s.currency_profit or "").strip()
        if not quote:
            log.debug("MT5 symbol %s has no profit currency; not listed", s.name)
            continue
        symbol = f"{base}/{quote}"
        if not base or base == quote or symbol in markets or "/" in base + quote:
            symbol = f"{s.name.replace('/', '')}/{quote}"
        if symbol in markets:
            log.debug("MT5 symbol %s collides with another as %s; not listed", s.name, symbol)
            continue
        digits = int(s.digits)
        tick = s.trade_tick_size if s.trade_tick_size and s.trade_tick_size > 0 else s.point
        # A tick may be finer than `digits` claims (0.25 on a 1-digit index): keep the tick's own decimals.
        price_tick = price_dec(tick, max(digits, step_decimals(tick))) if tick and tick > 0 else None
        if not price_tick:
            price_tick = Decimal(1).scaleb(-digits)
        vdec = step_decimals(s.volume_step)
        step = volume_dec(s.volume_step, vdec) if s.volume_step > 0 else Decimal(1).scaleb(-vdec)
        markets[symbol] = Market(
            symbol=symbol,
            base=symbol.split("/")[0],
            quote=quote,
            price_tick=price_tick,
            amount_step=step,
            min_amount=volume_dec(s.volume_min, vdec),
            max_amount=volume_dec(s.volume_max, vdec) if s.volume_max > 0 else None,
            maker_fee=ZERO,
            taker_fee=ZERO,
            active=int(s.trade_mode) != disabled_trade_mode,
        )
        specs[symbol] = SymbolSpec(
            name=s.name,
            digits=digits,
            volume_decimals=vdec,
            filling_mode=int(s.filling_mode),
            contract_size=Decimal(repr(float(s.trade_contract_size))),
            selected=bool(s.select),
        )
    return markets, specs


def bars_to_arrays(rates: Any) -> CandleArrays:
    """A rates array -> chart arrays; volume is real_volume if the series has any, else tick_volume."""
    if rates is None or len(rates) == 0:
        return CandleArrays.empty()
    real = np.asarray(rates["real_volume"])
    volume = real if np.any(real) else np.asarray(rates["tick_volume"])
    return CandleArrays(
        np.asarray(rates["time"], dtype=np.int64) * 1000,
        np.asarray(rates["open"], dtype=np.float64).copy(),
        np.asarray(rates["high"], dtype=np.float64).copy(),
        np.asarray(rates["low"], dtype=np.float64).copy(),
        np.asarray(rates["close"], dtype=np.float64).copy(),
        volume.astype(np.float64),
    )


def retcode_sentence(retcode: int, comment: str = "") -> str:
    meaning = RETCODE_MEANINGS.get(retcode, "the trade server refused the request")
    said = f"; the server said “{comment}”" if comment else ""
    return f"{meaning} (code {retcode}{said})"


def client_comment(client_order_id: str) -> str:
    """The `comment` that carries a client order id; OrderRejected when it cannot fit unchanged."""
    cid = client_order_id or ""
    if not cid or len(cid) > MAX_COMMENT or not all(" " <= ch <= "~" for ch in cid):
        raise OrderRejected(
            f"MetaTrader 5 keeps the client order id in the order comment, which holds at most {MAX_COMMENT} "
            f"plain ASCII characters; '{cid[:40]}' ({len(cid)} characters) does not fit, so the order was not sent."
        )
    return cid


def load_module(module: Any = None) -> Any:
    """The MetaTrader5 package, imported only now; VenueUnavailable with a sentence when it cannot be."""
    if module is not None:
        return module
    if sys.platform != "win32":
        raise VenueUnavailable(UNAVAILABLE)
    try:
        return importlib.import_module("MetaTrader5")
    except Exception:  # not installed, or its DLL failed to load
        log.info("importing MetaTrader5 failed", exc_info=True)
        raise VenueUnavailable(
            "The MetaTrader5 Python package is missing or could not be loaded (pip install MetaTrader5). "
            + UNAVAILABLE
        ) from None


# --------------------------------------------------------------------------- the venue


class MT5Venue:
    """A MetaTrader 5 terminal as a `Venue`. See the module docstring."""

    name = "mt5"
    title = "MetaTrader 5"

    def __init__(self, config: MT5Config | None = None, module: Any = None, *,
                 clock: Callable[[], float] = time.time, bus: Any = None, guard: Guard | None = None) -> None:
        self.config = config or MT5Config()
        # Like every venue, behind a guard: a hung or crashed terminal opens the breaker (the health
        # panel shows it) instead of every poll queueing behind it. No rate limit worth the name: the
        # terminal is local; the one worker thread is the real bulkhead.
        self.guard = guard or Guard("exchange:mt5", GuardConfig(rate_per_second=1000.0, burst=1000.0,
                                                                call_timeout=30.0, retry_first_delay=0.5),
                                    bus=bus)
        self._mt5 = load_module(module)
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mt5")
        self._connect_lock = asyncio.Lock()
        self._markets_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._connected = False
        self._closed = False
        self.markets: dict[str, Market] = {}
        self._specs: dict[str, SymbolSpec] = {}
        self._by_name: dict[str, str] = {}  # MT5 name -> unified symbol
        self._selected: set[str] = set()  # MT5 names in Market Watch; touched on the worker only
        self.account_currency = ""
        self.currency_digits = 2

    # -- the worker ------------------------------------------------------------------------------

    async def _run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the MT5 thread through the guard (reads are idempotent: retried when the terminal
        failed). Failures become VenueError sentences; `what` completes 'while ...'."""
        if self._closed:
            raise VenueUnavailable("The MetaTrader 5 connection is closed.")
        try:
            return await self.guard.call(lambda: self._attempt(what, fn, *args), idempotent=True, what=what)
        except CircuitOpenError as exc:
            raise VenueUnavailable(str(exc)) from None
        except ResilienceError as exc:  # a timeout: the terminal did not answer
            raise VenueUnavailable(f"The MetaTrader 5 terminal did not answer while {what}: {exc}") from None

    async def _attempt(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except AssertionError:  # a broken invariant: a bug, shown as one
            raise
        except VenueUnavailable as exc:
            exc.failure_kind = FailureKind.UNHEALTHY  # type: ignore[attr-defined]
            raise
        except VenueError as exc:  # an unknown symbol, a refused request: the terminal is fine
            exc.failure_kind = FailureKind.BUSINESS  # type: ignore[attr-defined]
            raise
        except Exception as exc:
            if self._closed:
                raise VenueUnavailable("The MetaTrader 5 connection is closed.") from None
            log.warning("MetaTrader 5 failed while %s", what, exc_info=True)
            err = VenueUnavailable(
                f"The MetaTrader 5 terminal failed while {what} ({type(exc).__name__}). "
                "Check that the terminal is still running and logged in."
            )
            err.failure_kind = FailureKind.UNHEALTHY  # type: ignore[attr-defined]
            raise err from None

    def _last_error(self) -> tuple[int, str]:
        try:
            code, message = self._mt5.last_error()
            return int(code), str(message)
        except Exception:
            return 0, "no reason given"

    def _unavailable(self, what: str) -> VenueUnavailable:
        code, message = self._last_error()
        return VenueUnavailable(f"MetaTrader 5 could not {what}: {message} (error {code}).")

    def _rows(self, result: Any, what: str) -> tuple:
        """A tuple of named tuples, treating None as empty unless last_error says something failed."""
        if result is not None:
            return tuple(result)
        code, _ = self._last_error()
        if code in (RES_S_OK, RES_E_NOT_FOUND, 0):
            return ()
        raise self._unavailable(what)

    def _ensure_selected(self, name: str) -> None:
        # Worker only. The terminal streams prices only for symbols in Market Watch.
        if name in self._selected:
            return
        if not self._mt5.symbol_select(name, True):
            raise self._unavailable(f"add {name} to Market Watch")
        self._selected.add(name)

    # -- connection ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Initialize the terminal connection once; VenueUnavailable with a sentence if it cannot."""
        if self._connected:
            return
        async with self._connect_lock:
            if not self._connected:
                await self._run("connecting", self._w_connect)
                self._connected = True

    def _w_connect(self) -> None:
        mt5, cfg = self._mt5, self.config
        args = (cfg.path,) if cfg.path else ()
        kwargs: dict[str, Any] = {"timeout": int(cfg.timeout_ms), "portable": bool(cfg.portable)}
        if cfg.login is not None:
            kwargs["login"] = int(cfg.login)
        if cfg.password:
            kwargs["password"] = cfg.password
        if cfg.server:
            kwargs["server"] = cfg.server
        if not mt5.initialize(*args, **kwargs):
            code, message = self._last_error()
            self._quiet_shutdown()
            raise VenueUnavailable(
                f"Meridian could not connect to the MetaTrader 5 terminal: {message} (error {code}). {UNAVAILABLE}"
            )
        account = mt5.account_info()
        if account is None:
            code, message = self._last_error()
            self._quiet_shutdown()
            raise VenueUnavailable(
                f"The MetaTrader 5 terminal is running but no trading account is logged in: {message} "
                f"(error {code}). Log in to your broker account in the terminal, then connect again."
            )
        terminal = mt5.terminal_info()
        if terminal is not None and not terminal.connected:
            self._quiet_shutdown()
            raise VenueUnavailable(
                "The MetaTrader 5 terminal is not connected to its broker's server. "
                "Check its internet connection and login, then connect again."
            )
        self.account_currency = str(account.currency)
        self.currency_digits = int(account.currency_digits)

    def _quiet_shutdown(self) -> None:
        try:
            self._mt5.shutdown()
        except Exception:
            log.debug("MetaTrader5.shutdown failed", exc_info=True)

    async def close(self) -> None:
        """Shut the terminal connection down on the worker and stop the worker; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()  # ends every watch()
        if self._connected:
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, self._quiet_shutdown)
            except Exception:  # closing must not raise on the way out
                log.debug("closing MetaTrader 5 failed", exc_info=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- markets ---------------------------------------------------------------------------------

    async def load_markets(self) -> dict[str, Market]:
        await self.connect()
        if not self.markets:
            async with self._markets_lock:
                if not self.markets:
                    markets, specs = await self._run("reading the symbols", self._w_symbols)
                    self._specs = specs
                    self._by_name = {spec.name: sym for sym, spec in specs.items()}
                    self.markets = markets
        return dict(self.markets)

    def _w_symbols(self) -> tuple[dict[str, Market], dict[str, SymbolSpec]]:
        mt5 = self._mt5
        infos = mt5.symbols_get(group=self.config.symbols) if self.config.symbols else mt5.symbols_get()
        if infos is None:
            raise self._unavailable("read the list of symbols")
        markets, specs = build_markets(infos, disabled_trade_mode=getattr(mt5, "SYMBOL_TRADE_MODE_DISABLED", 0))
        self._selected.update(spec.name for spec in specs.values() if spec.selected)
        return markets, specs

    async def _spec(self, symbol: str) -> SymbolSpec:
        await self.load_markets()
        spec = self._specs.get(symbol)
        if spec is None:
            raise UnknownSymbol(self._unknown(symbol))
        return spec

    def _unknown(self, symbol: str) -> str:
        guess = difflib.get_close_matches(symbol.upper(), list(self.markets), n=1, cutoff=0.6)
        hint = f" Did you mean {guess[0]}?" if guess else ""
        return (f"The MetaTrader 5 account does not list {symbol}; symbols are named BASE/QUOTE from the "
                f"terminal's currencies, for example EUR/USD.{hint}")

    def mt5_name(self, symbol: str) -> str:
        """The terminal's name for a unified symbol (after load_markets)."""
        spec = self._specs.get(symbol)
        if spec is None:
            raise UnknownSymbol(self._unknown(symbol))
        return spec.name

    def contract_size(self, symbol: str) -> Decimal:
        """Units of the base in one lot (after load_markets): 100000 for EUR/USD at most brokers."""
        spec = self._specs.get(symbol)
        if spec is None:
            raise UnknownSymbol(self._unknown(symbol))
        return spec.contract_size

    # -- prices ----------------------------------------------------------------------------------

    def _ticker(self, symbol: str, spec: SymbolSpec, tick: Any) -> Ticker | None:
        bid = price_dec(tick.bid, spec.digits) if tick.bid and tick.bid > 0 else None
        ask = price_dec(tick.ask, spec.digits) if tick.ask and tick.ask > 0 else None
        last = price_dec(tick.last, spec.digits) if tick.last and tick.last > 0 else (bid or ask)
        if last is None:
            return None
        return Ticker(symbol=symbol, ts=int(tick.time_msc), last=last, bid=bid, ask=ask, venue=self.name)

    def _w_ticks(self, wanted: Sequence[tuple[str, SymbolSpec]]) -> dict[str, tuple[int, Ticker | None]]:
        out: dict[str, tuple[int, Ticker | None]] = {}
        for symbol, spec in wanted:
            self._ensure_selected(spec.name)
            tick = self._mt5.symbol_info_tick(spec.name)
            if tick is not None:
                out[symbol] = (int(tick.time_msc), self._ticker(symbol, spec, tick))
        return out

    async def fetch_ticker(self, symbol: str) -> Ticker:
        spec = await self._spec(symbol)
        ticks = await self._run(f"reading the price of {symbol}", self._w_ticks, [(symbol, spec)])
        ticker = ticks.get(symbol, (0, None))[1]
        if ticker is None:
            raise VenueError(f"MetaTrader 5 has no price for {symbol} yet (the market may be closed, or the "
                             "terminal is still loading it). Try again in a moment.")
        return ticker

    async def fetch_tickers(self, symbols: Sequence[str]) -> dict[str, Ticker]:
        await self.load_markets()
        wanted = [(s, self._specs[s]) for s in symbols if s in self._specs]
        ticks = await self._run("reading prices", self._w_ticks, wanted)
        return {s: t for s, (_, t) in ticks.items() if t is not None}

    def _timeframe(self, timeframe: str) -> int:
        constant = _TIMEFRAME_CONSTANTS.get(timeframe)
        if constant is None:
            raise VenueError(f"Timeframe {timeframe} is not offered; choose one of {', '.join(TIMEFRAMES)}.")
        return int(getattr(self._mt5, constant))

    def _w_rates(self, symbol: str, name: str, tf: int, since: int | None, limit: int | None) -> Any:
        mt5 = self._mt5
        self._ensure_selected(name)
        if since is None:
            rates = mt5.copy_rates_from_pos(name, tf, 0, int(limit or CHART_HISTORY))
        else:
            end = int(self._clock()) + SERVER_CLOCK_SLACK_S
            rates = mt5.copy_rates_range(name, tf, int(since // 1000), end)
        if rates is None:
            code, _ = self._last_error()
            if code == RES_E_NOT_FOUND:
                return None
            raise self._unavailable(f"read the bars of {symbol}")
        if since is not None and limit is not None:
            rates = rates[:limit]
        return rates

    async def fetch_ohlcv_arrays(self, symbol: str, timeframe: str, since: int | None = None,
                                 limit: int | None = None) -> CandleArrays:
        """OHLCV as float arrays for charts, without a Decimal per value."""
        spec = await self._spec(symbol)
        tf = self._timeframe(timeframe)
        rates = await self._run(f"reading the bars of {symbol}", self._w_rates, symbol, spec.name, tf, since, limit)
        return bars_to_arrays(rates)

    async def fetch_ohlcv(self, symbol: str, timeframe: str, since: int | None = None,
                          limit: int | None = None) -> list[Candle]:
        spec = await self._spec(symbol)
        a = await self.fetch_ohlcv_arrays(symbol, timeframe, since, limit)
        d = spec.digits
        def p(x: float) -> Decimal:
            return price_dec(float(x), d) or ZERO

        return [Candle(int(a.ts[i]), p(a.open[i]), p(a.high[i]), p(a.low[i]), p(a.close[i]), Decimal(int(a.volume[i])))
                for i in range(len(a))]

    async def fetch_order_book(self, symbol: str, limit: int = 20) -> OrderBook:
        """The top of book from the last tick, one level each side, size unknown (0)."""
        ticker = await self.fetch_ticker(symbol)
        bids = (BookLevel(ticker.bid, ZERO),) if ticker.bid is not None and limit > 0 else ()
        asks = (BookLevel(ticker.ask, ZERO),) if ticker.ask is not None and limit > 0 else ()
        return OrderBook(symbol, ticker.ts, bids, asks)

    async def watch(self, symbols: Sequence[str]) -> AsyncIterator[StreamEvent]:  # type: ignore[override]
        await self.load_markets()
        unknown = [s for s in symbols if s not in self._specs]
        if unknown:
            raise UnknownSymbol(self._unknown(unknown[0]))
        wanted = [(s, self._specs[s]) for s in dict.fromkeys(symbols)]
        seen: dict[str, int] = {}
        interval = max(0.001, self.config.poll_interval_ms / 1000.0)
        while not self._closed:
            try:
                ticks = await self._run("reading prices", self._w_ticks, wanted)
            except VenueUnavailable:
                if self._closed:
                    return
                raise
            for symbol, (ms, ticker) in ticks.items():
                if seen.get(symbol) != ms:
                    seen[symbol] = ms
                    if ticker is not None:
                        yield ticker
            try:
                await asyncio.wait_for(self._stop.wait(), interval)
            except TimeoutError:
                pass

    # -- account ---------------------------------------------------------------------------------

    def _w_balance(self) -> dict[str, Balance]:
        account = self._mt5.account_info()
        if account is None:
            raise self._unavailable("read the account")
        cd = int(account.currency_digits)
        currency = str(account.currency)
        return {currency: Balance(currency, volume_dec(account.margin_free, cd), volume_dec(account.margin, cd))}

    async def fetch_balance(self) -> dict[str, Balance]:
        await self.connect()
        return await self._run("reading the account", self._w_balance)

    # -- orders ----------------------------------------------------------------------------------

    def _filling(self, spec: SymbolSpec, tif: TimeInForce, symbol: str) -> int:
        mt5 = self._mt5
        fok = bool(spec.filling_mode & SYMBOL_FILLING_FOK)
        ioc = bool(spec.filling_mode & SYMBOL_FILLING_IOC)
        if tif is TimeInForce.FOK and not fok or tif is TimeInForce.IOC and not ioc:
            allowed = " or ".join(n for n, ok in (("FOK", fok), ("IOC", ioc)) if ok) or "neither FOK nor IOC"
            raise OrderRejected(f"The broker does not allow {tif.value} market orders on {symbol} (it allows "
                                f"{allowed}); the order was not sent.")
        if tif is TimeInForce.IOC or (tif is TimeInForce.GTC and not fok and ioc):
            return int(mt5.ORDER_FILLING_IOC)
        if fok:
            return int(mt5.ORDER_FILLING_FOK)
        return int(mt5.ORDER_FILLING_RETURN)

    def _trade_request(self, request: OrderRequest, spec: SymbolSpec, comment: str) -> dict[str, Any]:
        mt5, buy = self._mt5, request.side is Side.BUY
        base: dict[str, Any] = {
            "symbol": spec.name,
            "volume": float(request.amount),
            "magic": int(self.config.magic),
            "comment": comment,
            "type_time": int(mt5.ORDER_TIME_GTC),
        }
        if request.type is OrderType.MARKET:
            return base | {
                "action": int(mt5.TRADE_ACTION_DEAL),
                "type": int(mt5.ORDER_TYPE_BUY if buy else mt5.ORDER_TYPE_SELL),
                "deviation": int(self.config.deviation_points),
                "type_filling": self._filling(spec, request.time_in_force, request.symbol),
            }
        if request.type is OrderType.LIMIT:
            return base | {
                "action": int(mt5.TRADE_ACTION_PENDING),
                "type": int(mt5.ORDER_TYPE_BUY_LIMIT if buy else mt5.ORDER_TYPE_SELL_LIMIT),
                "price": float(request.price),  # type: ignore[arg-type]
                "type_filling": int(mt5.ORDER_FILLING_RETURN),
            }
        return base | {
            "action": int(mt5.TRADE_ACTION_PENDING),
            "type": int(mt5.ORDER_TYPE_BUY_STOP_LIMIT if buy else mt5.ORDER_TYPE_SELL_STOP_LIMIT),
            "price": float(request.stop_price),  # type: ignore[arg-type]
            "stoplimit": float(request.price),  # type: ignore[arg-type]
            "type_filling": int(mt5.ORDER_FILLING_RETURN),
        }

    @staticmethod
    def _check_request(request: OrderRequest) -> None:
        if not request.amount > 0:
            raise OrderRejected("The amount must be a number of lots greater than zero.")
        if request.type is not OrderType.MARKET:
            if request.price is None or not request.price > 0:
                raise OrderRejected(f"A {request.type.value.replace('_', '-')} order needs a price greater than zero.")
            if request.type is OrderType.STOP_LIMIT and (request.stop_price is None or not request.stop_price > 0):
                raise OrderRejected("A stop-limit order needs a stop price greater than zero.")
            if request.time_in_force is not TimeInForce.GTC:
                raise OrderRejected("MetaTrader 5 pending orders rest until cancelled (GTC); for IOC or FOK use a "
                                    "market order. The order was not sent.")

    async def create_order(self, request: OrderRequest) -> Order:
        """Send once, never again: a lost answer is OrderOutcomeUnknown, to reconcile by client id."""
        spec = await self._spec(request.symbol)
        self._check_request(request)
        comment = client_comment(request.client_order_id)
        trade = self._trade_request(request, spec, comment)
        if self._closed:
            raise VenueUnavailable("The MetaTrader 5 connection is closed; the order was not sent.")
        loop = asyncio.get_running_loop()

        async def send() -> Order:
            return await loop.run_in_executor(self._executor, self._w_create, request, spec, trade)

        try:
            # Not idempotent: tried exactly once. An open breaker means nothing was sent.
            return await self.guard.call(send, idempotent=False, what="placing an order")
        except CircuitOpenError as exc:
            raise VenueUnavailable(f"{exc} The order was not sent.") from None
        except CallTimeoutError:
            raise OrderOutcomeUnknown(
                f"MetaTrader 5 did not answer for the order {request.client_order_id} in time. It is being "
                "checked before anything is resent.", request.client_order_id) from None
        except (VenueError, AssertionError):
            raise
        except Exception as exc:  # the package failed mid-call: the order may have gone out
            log.warning("order_send failed", exc_info=True)
            raise OrderOutcomeUnknown(
                f"The order {request.client_order_id} may or may not have reached MetaTrader 5 "
                f"({type(exc).__name__}). It is being checked before anything is resent.",
                request.client_order_id,
            ) from None

    def _w_create(self, request: OrderRequest, spec: SymbolSpec, trade: dict[str, Any]) -> Order:
        mt5 = self._mt5
        self._ensure_selected(spec.name)
        if trade["action"] == int(mt5.TRADE_ACTION_DEAL):
            tick = mt5.symbol_info_tick(spec.name)
            price = (tick.ask if request.side is Side.BUY else tick.bid) if tick is not None else 0.0
            if not price or price <= 0:
                raise OrderRejected(f"MetaTrader 5 has no price for {request.symbol} right now (the market may be "
                                    "closed); the order was not sent.")
            trade["price"] = float(price)
        result = mt5.order_send(trade)
        if result is None:
            code, message = self._last_error()
            raise OrderOutcomeUnknown(
                f"MetaTrader 5 gave no answer to the order {request.client_order_id}: {message} (error {code}). "
                "It may or may not exist; it is being checked before anything is resent.",
                request.client_order_id,
            )
        return self._order_from_result(request, spec, trade, result)

    def _order_from_result(self, request: OrderRequest, spec: SymbolSpec, trade: dict[str, Any],
                           result: Any) -> Order:
        mt5 = self._mt5
        code = int(result.retcode)
        what = f"the {request.side.value} {request.type.value.replace('_', '-')} order for {request.amount} lots " \
               f"of {request.symbol}"
        if code == RETCODE_NO_MONEY:
            raise InsufficientFunds(f"MetaTrader 5 refused {what}: {retcode_sentence(code, result.comment)}.")
        if code in RETCODE_OUTCOME_UNKNOWN:
            raise OrderOutcomeUnknown(
                f"MetaTrader 5 could not confirm {what}: {retcode_sentence(code, result.comment)}. It is being "
                "checked before anything is resent.", request.client_order_id)
        if code in RETCODE_NOT_EXECUTED_TRY_LATER:
            raise VenueUnavailable(f"MetaTrader 5 did not execute {what}: {retcode_sentence(code, result.comment)}. "
                                   "Try again later.")
        if code not in RETCODE_DONE and code != RETCODE_PARTIAL:
            raise OrderRejected(f"MetaTrader 5 refused {what}: {retcode_sentence(code, result.comment)}.")
        market = trade["action"] == int(mt5.TRADE_ACTION_DEAL)
        filled = volume_dec(result.volume, spec.volume_decimals) if market else ZERO
        if market and code in RETCODE_DONE:
            status = OrderStatus.FILLED
        elif market:  # a partial fill: with IOC the rest is cancelled at once
            status = OrderStatus.CANCELED if trade["type_filling"] == int(mt5.ORDER_FILLING_IOC) \
                else OrderStatus.PARTIALLY_FILLED
        else:
            status = OrderStatus.OPEN
        return Order(
            id=str(result.order),
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            status=status,
            amount=request.amount,
            ts=int(self._clock() * 1000),
            price=request.price,
            stop_price=request.stop_price,
            filled=filled,
            average_price=price_dec(result.price, spec.digits) if market and result.price > 0 else None,
            fee_asset=self.account_currency,
        )

    # MT5 order types -> (side, our type); stop orders (4, 5) are stop-market: MARKET with a stop price.
    def _kind(self, o: Any) -> tuple[Side, OrderType, Decimal | None, Decimal | None, int]:
        mt5 = self._mt5
        spec = self._specs.get(self._by_name.get(o.symbol, ""))
        digits = spec.digits if spec else 8
        t = int(o.type)
        buy = t in (mt5.ORDER_TYPE_BUY, mt5.ORDER_TYPE_BUY_LIMIT, mt5.ORDER_TYPE_BUY_STOP,
                    mt5.ORDER_TYPE_BUY_STOP_LIMIT)
        side = Side.BUY if buy else Side.SELL
        if t in (mt5.ORDER_TYPE_BUY_LIMIT, mt5.ORDER_TYPE_SELL_LIMIT):
            return side, OrderType.LIMIT, price_dec(o.price_open, digits), None, digits
        if t in (mt5.ORDER_TYPE_BUY_STOP_LIMIT, mt5.ORDER_TYPE_SELL_STOP_LIMIT):
            return side, OrderType.STOP_LIMIT, price_dec(o.price_stoplimit, digits), price_dec(o.price_open, digits), \
                digits
        if t in (mt5.ORDER_TYPE_BUY_STOP, mt5.ORDER_TYPE_SELL_STOP):
            return side, OrderType.MARKET, None, price_dec(o.price_open, digits), digits
        return side, OrderType.MARKET, None, None, digits

    def _status(self, state: int, filled: Decimal) -> OrderStatus:
        mt5 = self._mt5
        if state == mt5.ORDER_STATE_FILLED:
            return OrderStatus.FILLED
        if state in (mt5.ORDER_STATE_CANCELED, mt5.ORDER_STATE_EXPIRED):
            return OrderStatus.CANCELED
        if state == mt5.ORDER_STATE_REJECTED:
            return OrderStatus.REJECTED
        if state == mt5.ORDER_STATE_PARTIAL or filled > 0:
            return OrderStatus.PARTIALLY_FILLED
        return OrderStatus.OPEN  # started, placed, or a modification/cancel request in flight

    def _order(self, o: Any, deals: Sequence[Any] = ()) -> Order:
        """An MT5 TradeOrder (active or history) and its deals -> Order. Worker or loop: pure."""
        symbol = self._by_name.get(o.symbol, o.symbol)
        spec = self._specs.get(symbol)
        vdec = spec.volume_decimals if spec else 8
        side, otype, price, stop, digits = self._kind(o)
        amount = volume_dec(o.volume_initial, vdec)
        filled = max(ZERO, amount - volume_dec(o.volume_current, vdec))
        fills = tuple(
            Fill(order_id=str(o.ticket), trade_id=str(d.ticket), symbol=symbol, side=side,
                 price=price_dec(d.price, digits), amount=volume_dec(d.volume, vdec),  # type: ignore[arg-type]
                 fee=volume_dec(-(d.commission + d.fee), self.currency_digits), fee_asset=self.account_currency,
                 ts=int(d.time_msc))
            for d in deals if d.volume > 0
        )
        average = None
        if fills:
            lots = sum((f.amount for f in fills), ZERO)
            notional = sum((f.price * f.amount for f in fills), ZERO)
            average = fills[0].price if len(fills) == 1 else (notional / lots).quantize(Decimal(1).scaleb(-digits - 2))
            filled = max(filled, lots)
        return Order(
            id=str(o.ticket),
            client_order_id=str(o.comment),
            symbol=symbol,
            side=side,
            type=otype,
            status=self._status(int(o.state), filled),
            amount=amount,
            ts=int(o.time_setup_msc),
            price=price,
            stop_price=stop,
            filled=filled,
            average_price=average,
            fee=sum((f.fee for f in fills), ZERO),
            fee_asset=self.account_currency,
            fills=fills,
        )

    def _w_deals(self, ticket: int) -> tuple:
        return self._rows(self._mt5.history_deals_get(ticket=ticket), "read the order's deals")

    def _w_find(self, ticket: int) -> tuple[Any, bool] | None:
        """(TradeOrder, is_active) for a ticket, active orders first, or None."""
        active = self._rows(self._mt5.orders_get(ticket=ticket), "read the open orders")
        match = [o for o in active if int(o.ticket) == ticket]
        if match:
            return match[0], True
        done = self._rows(self._mt5.history_orders_get(ticket=ticket), "read the order history")
        match = [o for o in done if int(o.ticket) == ticket]
        return (match[0], False) if match else None

    @staticmethod
    def _ticket(order_id: str) -> int | None:
        try:
            ticket = int(str(order_id).strip())
        except ValueError:
            return None
        return ticket if ticket > 0 else None

    def _w_fetch(self, order_id: str, symbol: str) -> Order:
        ticket = self._ticket(order_id)
        found = self._w_find(ticket) if ticket is not None else None
        if found is None:
            raise OrderNotFound(f"MetaTrader 5 has no order {order_id}.")
        o, _ = found
        return self._order(o, self._w_deals(ticket))  # type: ignore[arg-type]

    async def fetch_order(self, order_id: str, symbol: str) -> Order:
        await self.load_markets()
        return await self._run(f"reading order {order_id}", self._w_fetch, order_id, symbol)

    def _w_by_client_id(self, comment: str, symbol: str, name: str) -> Order:
        mt5, magic = self._mt5, int(self.config.magic)

        def mine(o: Any) -> bool:
            return o.symbol == name and o.comment == comment and int(o.magic) == magic

        found = [o for o in self._rows(mt5.orders_get(symbol=name), "read the open orders") if mine(o)]
        if not found:
            now = int(self._clock())
            start = now - int(self.config.history_days) * 86_400
            history = self._rows(mt5.history_orders_get(start, now + SERVER_CLOCK_SLACK_S), "read the order history")
            found = [o for o in history if mine(o)]
        if not found:
            raise OrderNotFound(f"MetaTrader 5 has no order with client id {comment} on {symbol} "
                                f"in the last {self.config.history_days} days.")
        o = max(found, key=lambda x: int(x.time_setup_msc))
        return self._order(o, self._w_deals(int(o.ticket)))

    async def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> Order:
        spec = await self._spec(symbol)
        try:
            comment = client_comment(client_order_id)
        except OrderRejected:  # no order can carry this id, so none exists
            raise OrderNotFound(f"MetaTrader 5 has no order with client id {client_order_id}.") from None
        return await self._run(f"looking up order {client_order_id}", self._w_by_client_id, comment, symbol, spec.name)

    def _w_open(self, name: str | None) -> list[Order]:
        rows = self._mt5.orders_get(symbol=name) if name else self._mt5.orders_get()
        return [self._order(o) for o in self._rows(rows, "read the open orders")]

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        await self.load_markets()
        name = (await self._spec(symbol)).name if symbol is not None else None
        return await self._run("reading the open orders", self._w_open, name)

    def _w_cancel(self, order_id: str, symbol: str) -> Order:
        mt5 = self._mt5
        ticket = self._ticket(order_id)
        found = self._w_find(ticket) if ticket is not None else None
        if found is None:
            raise OrderNotFound(f"MetaTrader 5 has no order {order_id}.")
        o, active = found
        if not active:
            status = self._order(o).status
            raise OrderRejected(f"Order {order_id} is already {status.value.replace('_', ' ')}; "
                                "there is nothing to cancel.")
        result = mt5.order_send({"action": int(mt5.TRADE_ACTION_REMOVE), "order": ticket})
        if result is None:
            code, message = self._last_error()
            raise VenueUnavailable(f"MetaTrader 5 gave no answer to cancelling order {order_id}: {message} "
                                   f"(error {code}). The order may still be open; check it before trying again.")
        code = int(result.retcode)
        if code not in RETCODE_DONE:
            raise OrderRejected(f"MetaTrader 5 could not cancel order {order_id}: "
                                f"{retcode_sentence(code, result.comment)}.")
        after = self._w_find(ticket)  # type: ignore[arg-type]
        if after is not None and not after[1]:
            return self._order(after[0], self._w_deals(ticket))  # type: ignore[arg-type]
        # The terminal's history can lag the server's answer by a moment.
        return replace(self._order(o), status=OrderStatus.CANCELED)

    async def cancel_order(self, order_id: str, symbol: str) -> Order:
        await self.load_markets()
        return await self._run(f"cancelling order {order_id}", self._w_cancel, order_id, symbol)
