"""A stand-in for the `MetaTrader5` Python package: a logged-in terminal on a demo account.

The real package is a Windows-only C extension talking to a running MetaTrader 5
terminal over IPC, so it cannot run here. `Terminal()` behaves like the imported
module: the same function names and keyword arguments, the same constants, the
same return shapes (named tuples with the real field names in the real order,
numpy structured arrays for rates), `None` plus `last_error()` on failure. What
it returns and how it fails follows MetaQuotes' documentation of the package
(see the sources listed in `app/venues/mt5.py`).

What it simulates: a hedging demo account in USD with 10 000 USD, four symbols
(EURUSD, XAUUSD, BTCUSD in Market Watch; US500 hidden until `symbol_select`),
prices the test sets with `set_tick`, bars generated or injected with
`set_rates`, market orders filled at once at the ask/bid, pending limit orders
resting until `fill_pending` or a TRADE_ACTION_REMOVE, and history orders and
deals for everything that finished.

Failure modes, each switched on by the test:
- `fail_initialize`: `initialize()` returns False with (-6, 'Terminal: Authorization failed');
- `next_send_none`: the next `order_send` returns None (the request never left the terminal);
- `next_retcode`: the next `order_send` answers with that retcode (10006, 10019, ...);
- an order bigger than the free margin allows gets 10019 'No money', as a server would.

Rules it enforces, like the real package:
- one thread: every API call must come from the thread that made the first one, and
  never from `forbid_thread` (by default the thread that built the stand-in, which in
  the tests is the event loop's). A violation is recorded in `violations` and raised;
- no API call before `initialize()` or after `shutdown()`: None with (-10004, 'No IPC connection');
- `order_send` takes exactly the MqlTradeRequest keys with exact Python types (a
  Decimal volume is refused with (-2, 'Invalid "volume" argument'));
- prices stream only for symbols selected in Market Watch.

Every API call is recorded in `calls` as `(name, args, kwargs)`.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- return shapes
# Field names and their order as printed by the package (`_asdict()` in MetaQuotes' examples).

AccountInfo = namedtuple("AccountInfo", [
    "login", "trade_mode", "leverage", "limit_orders", "margin_so_mode", "trade_allowed", "trade_expert",
    "margin_mode", "currency_digits", "fifo_close", "balance", "credit", "profit", "equity", "margin",
    "margin_free", "margin_level", "margin_so_call", "margin_so_so", "margin_initial", "margin_maintenance",
    "assets", "liabilities", "commission_blocked", "name", "server", "currency", "company",
])

TerminalInfo = namedtuple("TerminalInfo", [
    "community_account", "community_connection", "connected", "dlls_allowed", "trade_allowed",
    "tradeapi_disabled", "email_enabled", "ftp_enabled", "notifications_enabled", "mqid", "build", "maxbars",
    "codepage", "ping_last", "community_balance", "retransmission", "company", "name", "language", "path",
    "data_path", "commondata_path",
])

SymbolInfo = namedtuple("SymbolInfo", [
    "custom", "chart_mode", "select", "visible", "session_deals", "session_buy_orders", "session_sell_orders",
    "volume", "volumehigh", "volumelow", "time", "digits", "spread", "spread_float", "ticks_bookdepth",
    "trade_calc_mode", "trade_mode", "start_time", "expiration_time", "trade_stops_level", "trade_freeze_level",
    "trade_exemode", "swap_mode", "swap_rollover3days", "margin_hedged_use_leg", "expiration_mode",
    "filling_mode", "order_mode", "order_gtc_mode", "option_mode", "option_right", "bid", "bidhigh", "bidlow",
    "ask", "askhigh", "asklow", "last", "lasthigh", "lastlow", "volume_real", "volumehigh_real",
    "volumelow_real", "option_strike", "point", "trade_tick_value", "trade_tick_value_profit",
    "trade_tick_value_loss", "trade_tick_size", "trade_contract_size", "trade_accrued_interest",
    "trade_face_value", "trade_liquidity_rate", "volume_min", "volume_max", "volume_step", "volume_limit",
    "swap_long", "swap_short", "margin_initial", "margin_maintenance", "session_volume", "session_turnover",
    "session_interest", "session_buy_orders_volume", "session_sell_orders_volume", "session_open",
    "session_close", "session_aw", "session_price_settlement", "session_price_limit_min",
    "session_price_limit_max", "margin_hedged", "price_change", "price_volatility", "price_theoretical",
    "price_greeks_delta", "price_greeks_theta", "price_greeks_gamma", "price_greeks_vega", "price_greeks_rho",
    "price_greeks_omega", "price_sensitivity", "basis", "category", "currency_base", "currency_profit",
    "currency_margin", "bank", "description", "exchange", "formula", "isin", "name", "page", "path",
])

Tick = namedtuple("Tick", ["time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real"])

TradeRequest = namedtuple("TradeRequest", [
    "action", "magic", "order", "symbol", "volume", "price", "stoplimit", "sl", "tp", "deviation", "type",
    "type_filling", "type_time", "expiration", "comment", "position", "position_by",
])

OrderSendResult = namedtuple("OrderSendResult", [
    "retcode", "deal", "order", "volume", "price", "bid", "ask", "comment", "request_id", "retcode_external",
    "request",
])

TradeOrder = namedtuple("TradeOrder", [
    "ticket", "time_setup", "time_setup_msc", "time_done", "time_done_msc", "time_expiration", "type",
    "type_time", "type_filling", "state", "magic", "position_id", "position_by_id", "reason", "volume_initial",
    "volume_current", "price_open", "sl", "tp", "price_current", "price_stoplimit", "symbol", "comment",
    "external_id",
])

TradePosition = namedtuple("TradePosition", [
    "ticket", "time", "time_msc", "time_update", "time_update_msc", "type", "magic", "identifier", "reason",
    "volume", "price_open", "sl", "tp", "price_current", "swap", "profit", "symbol", "comment", "external_id",
])

TradeDeal = namedtuple("TradeDeal", [
    "ticket", "order", "time", "time_msc", "type", "entry", "magic", "position_id", "reason", "volume", "price",
    "commission", "swap", "profit", "fee", "symbol", "comment", "external_id",
])

RATES_DTYPE = np.dtype([
    ("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
    ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8"),
])

# --------------------------------------------------------------------------- constants (the package's values)

TIMEFRAME_M1, TIMEFRAME_M5, TIMEFRAME_M15, TIMEFRAME_M30 = 1, 5, 15, 30
TIMEFRAME_H1, TIMEFRAME_H4, TIMEFRAME_D1 = 16385, 16388, 16408
TIMEFRAME_W1, TIMEFRAME_MN1 = 32769, 49153
_TIMEFRAME_SECONDS = {
    TIMEFRAME_M1: 60, TIMEFRAME_M5: 300, TIMEFRAME_M15: 900, TIMEFRAME_M30: 1800,
    TIMEFRAME_H1: 3600, TIMEFRAME_H4: 14400, TIMEFRAME_D1: 86400,
}

TRADE_ACTION_DEAL, TRADE_ACTION_PENDING, TRADE_ACTION_SLTP = 1, 5, 6
TRADE_ACTION_MODIFY, TRADE_ACTION_REMOVE, TRADE_ACTION_CLOSE_BY = 7, 8, 10

ORDER_TYPE_BUY, ORDER_TYPE_SELL, ORDER_TYPE_BUY_LIMIT, ORDER_TYPE_SELL_LIMIT = 0, 1, 2, 3
ORDER_TYPE_BUY_STOP, ORDER_TYPE_SELL_STOP, ORDER_TYPE_BUY_STOP_LIMIT, ORDER_TYPE_SELL_STOP_LIMIT = 4, 5, 6, 7
ORDER_TYPE_CLOSE_BY = 8

ORDER_FILLING_FOK, ORDER_FILLING_IOC, ORDER_FILLING_RETURN = 0, 1, 2
ORDER_TIME_GTC, ORDER_TIME_DAY, ORDER_TIME_SPECIFIED, ORDER_TIME_SPECIFIED_DAY = 0, 1, 2, 3

ORDER_STATE_STARTED, ORDER_STATE_PLACED, ORDER_STATE_CANCELED, ORDER_STATE_PARTIAL = 0, 1, 2, 3
ORDER_STATE_FILLED, ORDER_STATE_REJECTED, ORDER_STATE_EXPIRED = 4, 5, 6
ORDER_STATE_REQUEST_ADD, ORDER_STATE_REQUEST_MODIFY, ORDER_STATE_REQUEST_CANCEL = 7, 8, 9

ORDER_REASON_EXPERT = 3
DEAL_TYPE_BUY, DEAL_TYPE_SELL = 0, 1
DEAL_ENTRY_IN = 0
POSITION_TYPE_BUY, POSITION_TYPE_SELL = 0, 1

SYMBOL_TRADE_MODE_DISABLED, SYMBOL_TRADE_MODE_FULL = 0, 4
SYMBOL_FILLING_FOK, SYMBOL_FILLING_IOC = 1, 2  # bits of SymbolInfo.filling_mode

TRADE_RETCODE_REQUOTE = 10004
TRADE_RETCODE_REJECT = 10006
TRADE_RETCODE_CANCEL = 10007
TRADE_RETCODE_PLACED = 10008
TRADE_RETCODE_DONE = 10009
TRADE_RETCODE_DONE_PARTIAL = 10010
TRADE_RETCODE_ERROR = 10011
TRADE_RETCODE_TIMEOUT = 10012
TRADE_RETCODE_INVALID = 10013
TRADE_RETCODE_INVALID_VOLUME = 10014
TRADE_RETCODE_INVALID_PRICE = 10015
TRADE_RETCODE_INVALID_STOPS = 10016
TRADE_RETCODE_TRADE_DISABLED = 10017
TRADE_RETCODE_MARKET_CLOSED = 10018
TRADE_RETCODE_NO_MONEY = 10019
TRADE_RETCODE_PRICE_CHANGED = 10020
TRADE_RETCODE_PRICE_OFF = 10021
TRADE_RETCODE_TOO_MANY_REQUESTS = 10024
TRADE_RETCODE_CLIENT_DISABLES_AT = 10027
TRADE_RETCODE_INVALID_FILL = 10030
TRADE_RETCODE_CONNECTION = 10031
TRADE_RETCODE_INVALID_ORDER = 10035

RES_S_OK = 1
RES_E_FAIL = -1
RES_E_INVALID_PARAMS = -2
RES_E_NOT_FOUND = -4
RES_E_AUTH_FAILED = -6
RES_E_INTERNAL_FAIL_CONNECT = -10004
RES_E_INTERNAL_FAIL_TIMEOUT = -10005

# The server's words for each retcode, as they appear in OrderSendResult.comment.
_RETCODE_COMMENT = {
    TRADE_RETCODE_DONE: "Request executed",
    TRADE_RETCODE_PLACED: "Order placed",
    TRADE_RETCODE_REQUOTE: "Requote",
    TRADE_RETCODE_REJECT: "Request rejected",
    TRADE_RETCODE_INVALID: "Invalid request",
    TRADE_RETCODE_INVALID_VOLUME: "Invalid volume",
    TRADE_RETCODE_INVALID_PRICE: "Invalid price",
    TRADE_RETCODE_MARKET_CLOSED: "Market closed",
    TRADE_RETCODE_NO_MONEY: "No money",
    TRADE_RETCODE_INVALID_FILL: "Unsupported filling mode",
    TRADE_RETCODE_TIMEOUT: "Request timed out",
    TRADE_RETCODE_CONNECTION: "No connection",
}

_REQUEST_TYPES: dict[str, type] = {
    "action": int, "magic": int, "order": int, "symbol": str, "volume": float, "price": float,
    "stoplimit": float, "sl": float, "tp": float, "deviation": int, "type": int, "type_filling": int,
    "type_time": int, "expiration": int, "comment": str, "position": int, "position_by": int,
}

_COMMENT_LIMIT = 31  # what the terminal keeps of a comment; the venue never sends more


@dataclass
class _Symbol:
    name: str
    description: str
    base: str
    profit: str
    digits: int
    point: float
    tick_size: float
    contract: float
    vmin: float
    vmax: float
    vstep: float
    filling: int  # SYMBOL_FILLING_* bits
    visible: bool
    path: str
    calc_mode: int = 0


SYMBOLS = (
    _Symbol("EURUSD", "Euro vs US Dollar", "EUR", "USD", 5, 1e-05, 1e-05, 100000.0, 0.01, 500.0, 0.01,
            SYMBOL_FILLING_FOK | SYMBOL_FILLING_IOC, True, "Forex\\EURUSD"),
    _Symbol("XAUUSD", "Gold vs US Dollar", "XAU", "USD", 2, 0.01, 0.01, 100.0, 0.01, 100.0, 0.01,
            SYMBOL_FILLING_IOC, True, "Metals\\XAUUSD"),
    _Symbol("BTCUSD", "Bitcoin vs US Dollar", "BTC", "USD", 2, 0.01, 0.01, 1.0, 0.01, 10.0, 0.01,
            SYMBOL_FILLING_FOK, True, "Crypto\\BTCUSD", calc_mode=2),
    # An index CFD: both currencies are USD, so it has no BASE/QUOTE of its own; hidden from Market Watch.
    _Symbol("US500", "US 500 Cash Index", "USD", "USD", 2, 0.01, 0.25, 1.0, 0.1, 100.0, 0.1,
            SYMBOL_FILLING_FOK | SYMBOL_FILLING_IOC, False, "Indices\\US500", calc_mode=3),
)

START_PRICES = {"EURUSD": (1.08512, 1.08520), "XAUUSD": (2345.10, 2345.35), "BTCUSD": (64250.00, 64265.50),
                "US500": (5301.25, 5301.75)}


class StandInViolation(AssertionError):
    """The code under test broke a rule of the real package (threads, argument types)."""


class Terminal:
    """One running, logged-in MetaTrader 5 terminal, used exactly like the `MetaTrader5` module."""

    __author__ = "Meridian tests (stand-in for MetaQuotes Ltd.'s package)"
    __version__ = "5.0.45-standin"

    def __init__(self, *, clock: Callable[[], float] = time.time, forbid_thread: int | None = -1,
                 login: int = 52345678, leverage: int = 100, balance: float = 10000.0) -> None:
        self.clock = clock
        # -1: forbid the constructing thread (the event loop's, in the tests); None: forbid none.
        self.forbid_thread = threading.get_ident() if forbid_thread == -1 else forbid_thread
        self.thread_ident: int | None = None
        self.violations: list[str] = []
        self.calls: list[tuple[str, tuple, dict]] = []
        self.login_id = login
        self.leverage = leverage
        self.balance = balance
        self.margin = 0.0
        self.connected_to_server = True
        self.fail_initialize = False
        self.next_send_none = False
        self.next_retcode: int | None = None
        self.initialized = False
        self._error: tuple[int, str] = (RES_S_OK, "Success")
        self.symbols = {s.name: s for s in SYMBOLS}
        self.selected = {s.name for s in SYMBOLS if s.visible}
        self.ticks: dict[str, Tick] = {}
        for name, (bid, ask) in START_PRICES.items():
            self.set_tick(name, bid, ask)
        self.rates: dict[tuple[str, int], np.ndarray] = {}
        self.orders: dict[int, TradeOrder] = {}  # active (pending)
        self.history_orders: dict[int, TradeOrder] = {}
        self.deals: list[TradeDeal] = []
        self.positions: dict[int, TradePosition] = {}
        self._tickets = itertools.count(5_000_001)
        self._request_ids = itertools.count(1)

    # -- the rules ------------------------------------------------------------------------------

    def _enter(self, name: str, args: tuple = (), kwargs: dict | None = None) -> None:
        ident = threading.get_ident()
        self.calls.append((name, args, dict(kwargs or {})))
        if self.thread_ident is None:
            self.thread_ident = ident
        problem = ""
        if ident == self.forbid_thread:
            problem = f"{name}() was called on the forbidden thread (the event loop's)"
        elif ident != self.thread_ident:
            problem = f"{name}() was called from a second thread; the package is not thread-safe"
        if problem:
            self.violations.append(problem)
            raise StandInViolation(problem)

    def _ready(self) -> bool:
        if not self.initialized:
            self._error = (RES_E_INTERNAL_FAIL_CONNECT, "IPC initialize failed, MetaTrader 5 x64 not found")
            return False
        return True

    def _ok(self) -> None:
        self._error = (RES_S_OK, "Success")

    def call_names(self) -> list[str]:
        return [c[0] for c in self.calls]

    # -- test controls (not part of the package) -------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def set_tick(self, name: str, bid: float, ask: float, last: float = 0.0, volume_real: float = 0.0) -> Tick:
        prev = self.ticks.get(name)
        ms = self.now_ms()
        if prev is not None and ms <= prev.time_msc:
            ms = prev.time_msc + 1  # every new quote is a new tick, even within one millisecond
        tick = Tick(ms // 1000, bid, ask, last, int(volume_real), ms, 6, volume_real)
        self.ticks[name] = tick
        return tick

    def set_rates(self, name: str, timeframe: int, rows: list[tuple]) -> None:
        self.rates[(name, timeframe)] = np.array(rows, dtype=RATES_DTYPE)

    def fill_pending(self, ticket: int, price: float | None = None) -> TradeDeal:
        """A resting limit order is reached by the market and fills completely."""
        o = self.orders.pop(ticket)
        fill = o.price_open if price is None else price
        now = self.now_ms()
        done = o._replace(state=ORDER_STATE_FILLED, volume_current=0.0, time_done=now // 1000,
                          time_done_msc=now, price_current=fill)
        self.history_orders[ticket] = done
        side = DEAL_TYPE_BUY if o.type in (ORDER_TYPE_BUY_LIMIT, ORDER_TYPE_BUY_STOP_LIMIT) else DEAL_TYPE_SELL
        return self._deal(done, side, o.volume_initial, fill, now)

    # -- connection ------------------------------------------------------------------------------

    def initialize(self, path: str | None = None, *, login: int | None = None, password: str | None = None,
                   server: str | None = None, timeout: int | None = None, portable: bool = False) -> bool:
        self._enter("initialize", (path,) if path else (),
                    {k: v for k, v in dict(login=login, server=server, timeout=timeout, portable=portable).items()
                     if v is not None} | ({"password": "***"} if password else {}))
        for key, value, kind in (("login", login, int), ("password", password, str), ("server", server, str),
                                 ("timeout", timeout, int), ("portable", portable, bool)):
            if value is not None and type(value) is not kind:
                self._error = (RES_E_INVALID_PARAMS, f'Invalid "{key}" argument')
                return False
        if self.fail_initialize or (login is not None and login != self.login_id):
            self._error = (RES_E_AUTH_FAILED, "Terminal: Authorization failed")
            return False
        self.initialized = True
        self._ok()
        return True

    def shutdown(self) -> None:
        self._enter("shutdown")
        self.initialized = False

    def last_error(self) -> tuple[int, str]:
        self._enter("last_error")
        return self._error

    def version(self) -> tuple[int, int, str] | None:
        self._enter("version")
        if not self._ready():
            return None
        return (500, 4410, "14 Jun 2024")

    def terminal_info(self) -> TerminalInfo | None:
        self._enter("terminal_info")
        if not self._ready():
            return None
        self._ok()
        return TerminalInfo(False, False, self.connected_to_server, False, True, False, False, False, False, False,
                            4410, 100000, 0, 31250, 0.0, 0.0, "MetaQuotes Ltd.", "MetaTrader 5", "English",
                            "C:\\Program Files\\MetaTrader 5", "C:\\Program Files\\MetaTrader 5",
                            "C:\\Users\\trader\\AppData\\Roaming\\MetaQuotes\\Terminal\\Common")

    def account_info(self) -> AccountInfo | None:
        self._enter("account_info")
        if not self._ready():
            return None
        self._ok()
        equity = self.balance
        free = equity - self.margin
        level = equity / self.margin * 100 if self.margin else 0.0
        return AccountInfo(self.login_id, 0, self.leverage, 200, 0, True, True, 2, 2, False, self.balance, 0.0,
                           0.0, equity, self.margin, free, level, 50.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                           "Meridian Test", "MetaQuotes-Demo", "USD", "MetaQuotes Ltd.")

    # -- symbols and prices ----------------------------------------------------------------------

    def _symbol_info(self, s: _Symbol) -> SymbolInfo:
        tick = self.ticks.get(s.name)
        bid, ask = (tick.bid, tick.ask) if tick else (0.0, 0.0)
        spread = int(round((ask - bid) / s.point)) if tick else 0
        selected = s.name in self.selected
        values: dict[str, Any] = {f: 0 for f in SymbolInfo._fields}
        values.update(
            custom=False, chart_mode=0, select=selected, visible=selected, time=tick.time if tick else 0,
            digits=s.digits, spread=spread, spread_float=True, ticks_bookdepth=10, trade_calc_mode=s.calc_mode,
            trade_mode=SYMBOL_TRADE_MODE_FULL, trade_exemode=2, swap_mode=1, swap_rollover3days=3,
            margin_hedged_use_leg=False, expiration_mode=15, filling_mode=s.filling, order_mode=127,
            bid=bid, bidhigh=bid, bidlow=bid, ask=ask, askhigh=ask, asklow=ask, last=0.0, lasthigh=0.0,
            lastlow=0.0, volume_real=0.0, volumehigh_real=0.0, volumelow_real=0.0, option_strike=0.0,
            point=s.point, trade_tick_value=1.0, trade_tick_value_profit=1.0, trade_tick_value_loss=1.0,
            trade_tick_size=s.tick_size, trade_contract_size=s.contract, trade_accrued_interest=0.0,
            trade_face_value=0.0, trade_liquidity_rate=0.0, volume_min=s.vmin, volume_max=s.vmax,
            volume_step=s.vstep, volume_limit=0.0, swap_long=-0.7, swap_short=-1.0, margin_initial=0.0,
            margin_maintenance=0.0, margin_hedged=s.contract / 2, basis="", category="", currency_base=s.base,
            currency_profit=s.profit, currency_margin=s.base, bank="", description=s.description, exchange="",
            formula="", isin="", name=s.name, page="", path=s.path,
        )
        for f in ("session_volume", "session_turnover", "session_interest", "session_buy_orders_volume",
                  "session_sell_orders_volume", "session_open", "session_close", "session_aw",
                  "session_price_settlement", "session_price_limit_min", "session_price_limit_max", "price_change",
                  "price_volatility", "price_theoretical", "price_greeks_delta", "price_greeks_theta",
                  "price_greeks_gamma", "price_greeks_vega", "price_greeks_rho", "price_greeks_omega",
                  "price_sensitivity"):
            values[f] = 0.0
        return SymbolInfo(**values)

    def symbols_total(self) -> int:
        self._enter("symbols_total")
        return len(self.symbols) if self.initialized else 0

    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...] | None:
        self._enter("symbols_get", (), {"group": group} if group else {})
        if not self._ready():
            return None
        self._ok()
        names = [n for n in self.symbols if group in (None, "*") or _matches(n, group)]
        return tuple(self._symbol_info(self.symbols[n]) for n in names)

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        self._enter("symbol_info", (symbol,))
        if not self._ready():
            return None
        s = self.symbols.get(symbol)
        if s is None:
            self._error = (RES_E_NOT_FOUND, "Symbol not found")
            return None
        self._ok()
        return self._symbol_info(s)

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        self._enter("symbol_select", (symbol, enable))
        if not self._ready():
            return False
        if symbol not in self.symbols:
            self._error = (RES_E_NOT_FOUND, "Symbol not found")
            return False
        if enable:
            self.selected.add(symbol)
        else:
            self.selected.discard(symbol)
        self._ok()
        return True

    def symbol_info_tick(self, symbol: str) -> Tick | None:
        self._enter("symbol_info_tick", (symbol,))
        if not self._ready():
            return None
        if symbol not in self.symbols or symbol not in self.selected or symbol not in self.ticks:
            self._error = (RES_E_NOT_FOUND, "Symbol not found") if symbol not in self.symbols \
                else (RES_E_FAIL, "Symbol not selected in Market Watch")
            return None
        self._ok()
        return self.ticks[symbol]

    # -- bars ------------------------------------------------------------------------------------

    def _bars(self, symbol: str, timeframe: int) -> np.ndarray | None:
        if symbol not in self.symbols:
            self._error = (RES_E_NOT_FOUND, "Symbol not found")
            return None
        if timeframe not in _TIMEFRAME_SECONDS:
            self._error = (RES_E_INVALID_PARAMS, "Invalid timeframe")
            return None
        if (symbol, timeframe) in self.rates:
            return self.rates[(symbol, timeframe)]
        step = _TIMEFRAME_SECONDS[timeframe]
        now = int(self.clock())
        n = 300
        times = (now - now % step) - step * np.arange(n - 1, -1, -1, dtype=np.int64)
        s = self.symbols[symbol]
        base = START_PRICES[symbol][0]
        wave = base * (1 + 0.002 * np.sin(np.arange(n) / 7.0))
        out = np.zeros(n, dtype=RATES_DTYPE)
        out["time"] = times
        out["open"] = np.round(wave, s.digits)
        out["close"] = np.round(wave * (1 + 0.0003 * np.cos(np.arange(n))), s.digits)
        out["high"] = np.maximum(out["open"], out["close"]) + s.point * 3
        out["low"] = np.minimum(out["open"], out["close"]) - s.point * 3
        out["tick_volume"] = 100 + (np.arange(n) % 17)
        out["spread"] = 8
        return out

    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int, count: int) -> np.ndarray | None:
        self._enter("copy_rates_from_pos", (symbol, timeframe, start_pos, count))
        if not self._ready():
            return None
        bars = self._bars(symbol, timeframe)
        if bars is None:
            return None
        self._ok()
        end = len(bars) - start_pos  # position 0 is the current (newest) bar
        return bars[max(0, end - count):max(0, end)].copy()

    def copy_rates_range(self, symbol: str, timeframe: int, date_from: Any, date_to: Any) -> np.ndarray | None:
        self._enter("copy_rates_range", (symbol, timeframe, date_from, date_to))
        if not self._ready():
            return None
        bars = self._bars(symbol, timeframe)
        if bars is None:
            return None
        lo, hi = _seconds(date_from), _seconds(date_to)
        self._ok()
        return bars[(bars["time"] >= lo) & (bars["time"] <= hi)].copy()

    # -- trading ---------------------------------------------------------------------------------

    def order_send(self, request: dict) -> OrderSendResult | None:
        self._enter("order_send", (dict(request),))
        if not self._ready():
            return None
        if not isinstance(request, dict):
            self._error = (RES_E_INVALID_PARAMS, "Invalid request")
            return None
        for key, value in request.items():
            want = _REQUEST_TYPES.get(key)
            if want is None or type(value) is not want:
                self._error = (RES_E_INVALID_PARAMS, f'Invalid "{key}" argument')
                return None
        if self.next_send_none:
            self.next_send_none = False
            self._error = (RES_E_INTERNAL_FAIL_TIMEOUT, "Terminal: Call timeout")
            return None
        self._ok()
        full = {f: request.get(f, 0 if _REQUEST_TYPES[f] is int else 0.0 if _REQUEST_TYPES[f] is float else "")
                for f in TradeRequest._fields}
        full["comment"] = full["comment"][:_COMMENT_LIMIT]
        req = TradeRequest(**full)
        forced, self.next_retcode = self.next_retcode, None
        if forced is not None:
            return self._result(forced, req)
        if req.action == TRADE_ACTION_REMOVE:
            return self._remove(req)
        s = self.symbols.get(req.symbol)
        if s is None or req.action not in (TRADE_ACTION_DEAL, TRADE_ACTION_PENDING):
            return self._result(TRADE_RETCODE_INVALID, req)
        if not self.connected_to_server:
            return self._result(TRADE_RETCODE_CONNECTION, req)
        if req.symbol not in self.selected or req.symbol not in self.ticks:
            return self._result(TRADE_RETCODE_PRICE_OFF, req)
        steps = req.volume / s.vstep
        if not (s.vmin - 1e-12 <= req.volume <= s.vmax + 1e-12) or abs(steps - round(steps)) > 1e-7:
            return self._result(TRADE_RETCODE_INVALID_VOLUME, req)
        tick = self.ticks[req.symbol]
        if req.action == TRADE_ACTION_DEAL:
            return self._deal_now(req, s, tick)
        return self._pending(req, s, tick)

    def _result(self, retcode: int, req: TradeRequest, *, deal: int = 0, order: int = 0, volume: float = 0.0,
                price: float = 0.0) -> OrderSendResult:
        tick = self.ticks.get(req.symbol)
        return OrderSendResult(retcode, deal, order, volume, price, tick.bid if tick else 0.0,
                               tick.ask if tick else 0.0, _RETCODE_COMMENT.get(retcode, "Request rejected"),
                               next(self._request_ids), 0, req)

    def _deal_now(self, req: TradeRequest, s: _Symbol, tick: Tick) -> OrderSendResult:
        if req.type not in (ORDER_TYPE_BUY, ORDER_TYPE_SELL):
            return self._result(TRADE_RETCODE_INVALID_ORDER, req)
        allowed = {ORDER_FILLING_FOK: SYMBOL_FILLING_FOK, ORDER_FILLING_IOC: SYMBOL_FILLING_IOC}
        if req.type_filling not in allowed or not s.filling & allowed[req.type_filling]:
            return self._result(TRADE_RETCODE_INVALID_FILL, req)
        buy = req.type == ORDER_TYPE_BUY
        price = tick.ask if buy else tick.bid
        need = req.volume * s.contract * price / self.leverage
        if need > self.balance - self.margin:
            return self._result(TRADE_RETCODE_NO_MONEY, req)
        self.margin += need
        now = self.now_ms()
        ticket = next(self._tickets)
        order = TradeOrder(ticket, now // 1000, now, now // 1000, now, 0, req.type, req.type_time,
                           req.type_filling, ORDER_STATE_FILLED, req.magic, ticket, 0, ORDER_REASON_EXPERT,
                           req.volume, 0.0, price, req.sl, req.tp, price, 0.0, req.symbol, req.comment, "")
        self.history_orders[ticket] = order
        deal = self._deal(order, DEAL_TYPE_BUY if buy else DEAL_TYPE_SELL, req.volume, price, now)
        self.positions[ticket] = TradePosition(ticket, now // 1000, now, now // 1000, now,
                                               POSITION_TYPE_BUY if buy else POSITION_TYPE_SELL, req.magic, ticket,
                                               ORDER_REASON_EXPERT, req.volume, price, req.sl, req.tp, price, 0.0,
                                               0.0, req.symbol, req.comment, "")
        return self._result(TRADE_RETCODE_DONE, req, deal=deal.ticket, order=ticket, volume=req.volume, price=price)

    def _pending(self, req: TradeRequest, s: _Symbol, tick: Tick) -> OrderSendResult:
        if req.type == ORDER_TYPE_BUY_LIMIT:
            ok = 0 < req.price < tick.ask
        elif req.type == ORDER_TYPE_SELL_LIMIT:
            ok = req.price > tick.bid
        elif req.type == ORDER_TYPE_BUY_STOP_LIMIT:
            ok = req.price > tick.ask and 0 < req.stoplimit <= req.price
        elif req.type == ORDER_TYPE_SELL_STOP_LIMIT:
            ok = 0 < req.price < tick.bid and req.stoplimit >= req.price
        else:
            return self._result(TRADE_RETCODE_INVALID_ORDER, req)
        if not ok or abs(req.price / s.tick_size - round(req.price / s.tick_size)) > 1e-6:
            return self._result(TRADE_RETCODE_INVALID_PRICE, req)
        if req.type_filling != ORDER_FILLING_RETURN:
            return self._result(TRADE_RETCODE_INVALID_FILL, req)
        now = self.now_ms()
        ticket = next(self._tickets)
        self.orders[ticket] = TradeOrder(ticket, now // 1000, now, 0, 0, 0, req.type, req.type_time,
                                         req.type_filling, ORDER_STATE_PLACED, req.magic, 0, 0, ORDER_REASON_EXPERT,
                                         req.volume, req.volume, req.price, req.sl, req.tp,
                                         tick.ask if req.type in (2, 6) else tick.bid, req.stoplimit, req.symbol,
                                         req.comment, "")
        return self._result(TRADE_RETCODE_DONE, req, order=ticket, volume=req.volume, price=0.0)

    def _remove(self, req: TradeRequest) -> OrderSendResult:
        o = self.orders.pop(req.order, None)
        if o is None:
            return self._result(TRADE_RETCODE_INVALID, req)
        now = self.now_ms()
        self.history_orders[o.ticket] = o._replace(state=ORDER_STATE_CANCELED, time_done=now // 1000,
                                                   time_done_msc=now)
        return self._result(TRADE_RETCODE_DONE, req, order=o.ticket)

    def _deal(self, order: TradeOrder, side: int, volume: float, price: float, now: int) -> TradeDeal:
        deal = TradeDeal(next(self._tickets), order.ticket, now // 1000, now, side, DEAL_ENTRY_IN, order.magic,
                         order.ticket, ORDER_REASON_EXPERT, volume, price, -0.35 * volume * 10, 0.0, 0.0, 0.0,
                         order.symbol, order.comment, "")
        self.deals.append(deal)
        return deal

    # -- orders, positions, history --------------------------------------------------------------

    def orders_total(self) -> int:
        self._enter("orders_total")
        return len(self.orders)

    def orders_get(self, *, symbol: str | None = None, group: str | None = None,
                   ticket: int | None = None) -> tuple[TradeOrder, ...] | None:
        self._enter("orders_get", (), {k: v for k, v in dict(symbol=symbol, group=group, ticket=ticket).items()
                                       if v is not None})
        if not self._ready():
            return None
        self._ok()
        found = [o for o in self.orders.values()
                 if (symbol is None or o.symbol == symbol) and (group is None or _matches(o.symbol, group))
                 and (symbol is not None or ticket is None or o.ticket == ticket)]
        return tuple(found)

    def positions_total(self) -> int:
        self._enter("positions_total")
        return len(self.positions)

    def positions_get(self, *, symbol: str | None = None, group: str | None = None,
                      ticket: int | None = None) -> tuple[TradePosition, ...] | None:
        self._enter("positions_get", (), {k: v for k, v in dict(symbol=symbol, group=group, ticket=ticket).items()
                                          if v is not None})
        if not self._ready():
            return None
        self._ok()
        return tuple(p for p in self.positions.values()
                     if (symbol is None or p.symbol == symbol) and (group is None or _matches(p.symbol, group))
                     and (symbol is not None or ticket is None or p.ticket == ticket))

    def _history(self, name: str, rows: list, args: tuple, group: str | None, ticket: int | None,
                 position: int | None, when: Callable[[Any], int], ticket_of: Callable[[Any], int],
                 position_of: Callable[[Any], int]) -> tuple | None:
        if not self._ready():
            return None
        if ticket is not None:
            found = [r for r in rows if ticket_of(r) == ticket]
        elif position is not None:
            found = [r for r in rows if position_of(r) == position]
        else:
            if len(args) != 2:
                self._error = (RES_E_INVALID_PARAMS, f"{name}: date_from and date_to are required")
                return None
            lo, hi = _seconds(args[0]), _seconds(args[1])
            found = [r for r in rows if lo <= when(r) <= hi and (group is None or _matches(r.symbol, group))]
        self._ok()
        return tuple(found)

    def history_orders_total(self, date_from: Any, date_to: Any) -> int:
        self._enter("history_orders_total", (date_from, date_to))
        lo, hi = _seconds(date_from), _seconds(date_to)
        return sum(1 for o in self.history_orders.values() if lo <= o.time_setup <= hi)

    def history_orders_get(self, *args: Any, group: str | None = None, ticket: int | None = None,
                           position: int | None = None) -> tuple[TradeOrder, ...] | None:
        self._enter("history_orders_get", args, {k: v for k, v in dict(group=group, ticket=ticket,
                                                                       position=position).items() if v is not None})
        return self._history("history_orders_get", list(self.history_orders.values()), args, group, ticket,
                             position, lambda o: o.time_setup, lambda o: o.ticket, lambda o: o.position_id)

    def history_deals_total(self, date_from: Any, date_to: Any) -> int:
        self._enter("history_deals_total", (date_from, date_to))
        lo, hi = _seconds(date_from), _seconds(date_to)
        return sum(1 for d in self.deals if lo <= d.time <= hi)

    def history_deals_get(self, *args: Any, group: str | None = None, ticket: int | None = None,
                          position: int | None = None) -> tuple[TradeDeal, ...] | None:
        # ticket= here is the ORDER ticket (DEAL_ORDER), as the documentation says.
        self._enter("history_deals_get", args, {k: v for k, v in dict(group=group, ticket=ticket,
                                                                      position=position).items() if v is not None})
        return self._history("history_deals_get", list(self.deals), args, group, ticket, position,
                             lambda d: d.time, lambda d: d.order, lambda d: d.position_id)


def _seconds(value: Any) -> int:
    """The package takes a datetime or seconds since 1970 wherever it takes a date."""
    if hasattr(value, "timestamp"):
        return int(value.timestamp())
    if isinstance(value, (int, float)) and math.isfinite(value):
        return int(value)
    raise TypeError(f"a date must be a datetime or seconds since 1970, not {type(value).__name__}")


def _matches(name: str, group: str) -> bool:
    """The package's group filter: comma-separated masks with '*', '!' excludes; applied in order."""
    import fnmatch

    selected = False
    for cond in (c.strip() for c in group.split(",")):
        if cond.startswith("!"):
            if fnmatch.fnmatchcase(name, cond[1:]):
                selected = False
        elif fnmatch.fnmatchcase(name, cond):
            selected = True
    return selected


# The package exposes its constants on the module; a Terminal stands in for the module, so it carries them too.
for _name, _value in list(globals().items()):
    if _name.isupper() and isinstance(_value, int) and not _name.startswith("_"):
        setattr(Terminal, _name, _value)
del _name, _value
