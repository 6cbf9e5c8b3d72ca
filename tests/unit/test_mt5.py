"""The MetaTrader 5 venue against a stand-in terminal that speaks the `MetaTrader5` package's API.

The stand-in (tests/fakes/metatrader5_standin.py) enforces the package's rules: one
thread for every call, never the event loop's; exact argument types; None plus
`last_error()` on failure. Every test ends by checking it saw no violation.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from app.domain import Balance, Order, OrderRequest, OrderStatus, OrderType, Side, Ticker, TimeInForce
from app.venues.base import (
    InsufficientFunds,
    OrderNotFound,
    OrderOutcomeUnknown,
    OrderRejected,
    UnknownSymbol,
    Venue,
    VenueError,
    VenueUnavailable,
)
from app.venues.mt5 import (
    DEFAULT_MAGIC,
    MAX_COMMENT,
    UNAVAILABLE,
    MT5Config,
    MT5Venue,
    bars_to_arrays,
    build_markets,
    price_dec,
)
from tests.fakes import metatrader5_standin as standin
from tests.fakes.metatrader5_standin import StandInViolation, Terminal

T0 = 1_718_000_000.250  # seconds; the stand-in and the venue share this clock
ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self, seconds: float = T0) -> None:
        self.seconds = seconds

    def __call__(self) -> float:
        return self.seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def term(clock: FakeClock) -> Terminal:
    # Built on the test's thread, which runs the event loop: the stand-in forbids it.
    return Terminal(clock=clock)


@pytest.fixture
async def venue(term: Terminal, clock: FakeClock):
    v = MT5Venue(MT5Config(poll_interval_ms=10), module=term, clock=clock)
    yield v
    await v.close()
    assert term.violations == []


def req(symbol: str = "EUR/USD", side: Side = Side.BUY, type: OrderType = OrderType.MARKET,
        amount: str = "0.10", cid: str = "cid-1", price: str | None = None, stop: str | None = None,
        tif: TimeInForce = TimeInForce.GTC) -> OrderRequest:
    return OrderRequest(symbol, side, type, Decimal(amount), cid, Decimal(price) if price else None,
                        Decimal(stop) if stop else None, tif)


def sent(term: Terminal) -> list[dict]:
    return [c[1][0] for c in term.calls if c[0] == "order_send"]


def assert_sentence(text: str) -> None:
    assert text and text[0].isupper() and text.rstrip().endswith((".", "?"))
    for noise in ("Traceback", "Error:", "ImportError", "ModuleNotFoundError", "No module named", "File \""):
        assert noise not in text


# --------------------------------------------------------------------------- unavailable


def test_other_systems_get_the_sentence_not_a_traceback(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(VenueUnavailable) as err:
        MT5Venue(MT5Config())
    assert str(err.value) == UNAVAILABLE
    assert "Choose another venue" in str(err.value)
    assert_sentence(str(err.value))


def test_a_failed_import_on_windows_gets_the_sentence(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "MetaTrader5", None)  # makes `import MetaTrader5` raise ImportError
    with pytest.raises(VenueUnavailable) as err:
        MT5Venue(MT5Config())
    text = str(err.value)
    assert text.endswith(UNAVAILABLE) and "pip install MetaTrader5" in text
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert_sentence(text)


def test_on_windows_the_package_is_imported_when_the_venue_is_built(monkeypatch, term):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "MetaTrader5", term)
    venue = MT5Venue(MT5Config())
    assert venue._mt5 is term
    assert term.calls == []  # nothing called yet: the terminal is reached on first use, on the worker


def test_importing_the_module_does_not_import_the_package():
    code = "import sys, app.venues.mt5; print('MetaTrader5' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_initialize_failure_says_why_and_what_to_do(term, venue):
    term.fail_initialize = True
    with pytest.raises(VenueUnavailable) as err:
        await venue.load_markets()
    text = str(err.value)
    assert "Terminal: Authorization failed (error -6)" in text
    assert text.endswith(UNAVAILABLE)
    assert_sentence(text)
    assert term.call_names()[:3] == ["initialize", "last_error", "shutdown"]


async def test_initialize_gets_the_configured_account_and_the_password_stays_out_of_repr(term, clock):
    config = MT5Config(path="C:\\MT5\\terminal64.exe", login=52345678, password="s3cret!", server="MetaQuotes-Demo",
                       timeout_ms=5000)
    assert "s3cret" not in repr(config)
    venue = MT5Venue(config, module=term, clock=clock)
    await venue.connect()
    name, args, kwargs = term.calls[0]
    assert (name, args) == ("initialize", ("C:\\MT5\\terminal64.exe",))
    assert kwargs == {"login": 52345678, "server": "MetaQuotes-Demo", "timeout": 5000, "portable": False,
                      "password": "***"}
    await venue.close()


async def test_a_wrong_login_is_refused_with_the_terminals_reason(term, clock):
    venue = MT5Venue(MT5Config(login=111), module=term, clock=clock)
    with pytest.raises(VenueUnavailable, match="Authorization failed"):
        await venue.fetch_balance()
    await venue.close()


async def test_a_terminal_without_a_server_connection_is_unavailable(term, venue):
    term.connected_to_server = False
    with pytest.raises(VenueUnavailable, match="not connected to its broker's server") as err:
        await venue.connect()
    assert_sentence(str(err.value))


# --------------------------------------------------------------------------- the worker thread


async def test_every_call_runs_on_one_worker_thread_never_the_loop(term, venue):
    await venue.load_markets()
    await venue.fetch_ticker("EUR/USD")
    await venue.fetch_balance()
    await venue.fetch_ohlcv("EUR/USD", "1m", limit=3)
    await venue.create_order(req())
    assert term.thread_ident is not None and term.thread_ident != threading.get_ident()
    assert term.violations == []
    assert len(term.calls) > 8


def test_the_stand_in_catches_a_call_from_the_loop_thread_or_a_second_thread(term):
    with pytest.raises(StandInViolation, match="forbidden thread"):
        term.initialize()  # on the thread that built it: the event loop's, in the venue tests
    assert len(term.violations) == 1
    other = Terminal(forbid_thread=None)
    other.initialize()
    caught: list[BaseException] = []

    def elsewhere() -> None:
        try:
            other.symbols_total()
        except StandInViolation as exc:
            caught.append(exc)

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join()
    assert caught and "second thread" in str(caught[0])


async def test_a_slow_terminal_does_not_block_the_event_loop(term, venue, monkeypatch):
    await venue.connect()
    slow = term.account_info

    def account_info():
        time.sleep(0.3)  # the terminal thinking; the loop must keep running meanwhile
        return slow()

    monkeypatch.setattr(term, "account_info", account_info)
    beats = 0

    async def heartbeat() -> None:
        nonlocal beats
        while True:
            await asyncio.sleep(0.01)
            beats += 1

    task = asyncio.create_task(heartbeat())
    await venue.fetch_balance()
    task.cancel()
    assert beats >= 10


# --------------------------------------------------------------------------- markets and prices


async def test_markets_are_unified_from_the_symbols_currencies(venue):
    markets = await venue.load_markets()
    assert set(markets) == {"EUR/USD", "XAU/USD", "BTC/USD", "US500/USD"}
    eur = markets["EUR/USD"]
    assert (eur.base, eur.quote) == ("EUR", "USD")
    assert eur.price_tick == Decimal("0.00001") and str(eur.price_tick) == "0.00001"
    assert eur.amount_step == Decimal("0.01") and eur.min_amount == Decimal("0.01")
    assert eur.max_amount == Decimal("500")
    assert (eur.maker_fee, eur.taker_fee, eur.active) == (Decimal(0), Decimal(0), True)
    assert markets["XAU/USD"].price_tick == Decimal("0.01")
    assert markets["US500/USD"].price_tick == Decimal("0.25")  # the tick size, not the point
    assert markets["US500/USD"].amount_step == Decimal("0.1")
    assert venue.mt5_name("XAU/USD") == "XAUUSD" and venue.mt5_name("US500/USD") == "US500"
    assert venue.contract_size("EUR/USD") == Decimal(100000) and venue.contract_size("XAU/USD") == Decimal(100)


def test_an_exact_name_wins_the_unified_symbol_over_a_suffixed_twin():
    t = Terminal(forbid_thread=None)
    t.initialize()
    infos = {s.name: s for s in t.symbols_get()}
    twin = infos["EURUSD"]._replace(name="EURUSD.m", digits=3, visible=True)
    markets, specs = build_markets([twin, infos["EURUSD"], infos["US500"]])
    assert specs["EUR/USD"].name == "EURUSD"
    assert specs["EURUSD.m/USD"].name == "EURUSD.m" and markets["EURUSD.m/USD"].price_tick == Decimal("0.00001")
    assert markets["US500/USD"].base == "US500"


def test_prices_are_rounded_to_the_symbols_digits_before_becoming_decimal():
    assert str(price_dec(1.1000000000000001, 5)) == "1.10000"
    assert str(price_dec(2345.1000000000004, 2)) == "2345.10"
    assert str(price_dec(-0.0, 2)) == "0.00"
    assert price_dec(float("nan"), 5) is None


async def test_a_ticker_carries_rounded_decimals_and_the_tick_time(term, venue):
    tick = term.set_tick("EURUSD", 1.1000000000000001, 1.1000200000000001)
    t = await venue.fetch_ticker("EUR/USD")
    assert isinstance(t, Ticker) and t.venue == "mt5"
    assert str(t.bid) == "1.10000" and str(t.ask) == "1.10002"
    assert t.last == t.bid  # forex has no last deal price: the bid, as MT5 charts it
    assert t.ts == tick.time_msc
    term.set_tick("BTCUSD", 64000.5, 64010.25, last=64005.75)
    assert (await venue.fetch_ticker("BTC/USD")).last == Decimal("64005.75")


async def test_tickers_for_several_symbols_skip_unknown_ones(venue):
    got = await venue.fetch_tickers(["EUR/USD", "XAU/USD", "NOPE/USD"])
    assert set(got) == {"EUR/USD", "XAU/USD"}
    assert got["XAU/USD"].bid == Decimal("2345.10")


async def test_a_symbol_outside_market_watch_is_selected_once(term, venue):
    await venue.fetch_ticker("US500/USD")
    await venue.fetch_ticker("US500/USD")
    selects = [c for c in term.calls if c[0] == "symbol_select"]
    assert selects == [("symbol_select", ("US500", True), {})]


async def test_an_unknown_symbol_is_named_with_a_suggestion(venue):
    with pytest.raises(UnknownSymbol) as err:
        await venue.fetch_ticker("EUR/USDT")
    assert "does not list EUR/USDT" in str(err.value) and "Did you mean EUR/USD?" in str(err.value)


async def test_ohlcv_maps_timeframes_and_rounds_prices(term, venue, clock):
    t0 = 1_717_999_800
    term.set_rates("EURUSD", standin.TIMEFRAME_M1, [
        (t0, 1.1000000000000001, 1.1000500000000001, 1.09998, 1.10003, 17, 8, 0),
        (t0 + 60, 1.10003, 1.1001, 1.1, 1.10007, 23, 8, 0),
    ])
    candles = await venue.fetch_ohlcv("EUR/USD", "1m", limit=5)
    assert [c.ts for c in candles] == [t0 * 1000, (t0 + 60) * 1000]
    first = candles[0]
    assert (str(first.open), str(first.high), str(first.low), str(first.close)) == \
        ("1.10000", "1.10005", "1.09998", "1.10003")
    assert [c.volume for c in candles] == [Decimal(17), Decimal(23)]  # no real volume: tick volume
    assert ("copy_rates_from_pos", ("EURUSD", 1, 0, 5), {}) in term.calls
    for tf, constant in (("5m", 5), ("15m", 15), ("1h", 16385), ("4h", 16388), ("1d", 16408)):
        await venue.fetch_ohlcv("EUR/USD", tf, limit=2)
        assert term.calls[-1][1][:2] == ("EURUSD", constant)
    with pytest.raises(VenueError, match="Timeframe 2h is not offered"):
        await venue.fetch_ohlcv("EUR/USD", "2h")


async def test_ohlcv_since_reads_a_range_and_prefers_real_volume(term, venue):
    t0 = 1_717_999_800
    term.set_rates("BTCUSD", standin.TIMEFRAME_M1, [
        (t0, 64000.0, 64010.0, 63990.0, 64005.0, 40, 50, 0),
        (t0 + 60, 64005.0, 64020.0, 64001.0, 64015.0, 41, 50, 3),
        (t0 + 120, 64015.0, 64030.0, 64010.0, 64025.0, 42, 50, 5),
    ])
    candles = await venue.fetch_ohlcv("BTC/USD", "1m", since=(t0 + 60) * 1000, limit=1)
    assert [(c.ts, c.volume) for c in candles] == [((t0 + 60) * 1000, Decimal(3))]
    name, args, _ = term.calls[-1]
    assert name == "copy_rates_range" and args[:3] == ("BTCUSD", 1, t0 + 60)
    whole = bars_to_arrays(term.rates[("BTCUSD", 1)])
    assert list(whole.volume) == [0.0, 3.0, 5.0]  # one rule per series: real volume throughout


async def test_ohlcv_arrays_come_from_the_terminals_bars(venue):
    a = await venue.fetch_ohlcv_arrays("XAU/USD", "1h", limit=50)
    assert len(a) == 50 and a.ts[-1] > a.ts[0] and (a.volume > 0).all()


async def test_order_book_is_the_top_of_book_from_the_tick(term, venue):
    term.set_tick("XAUUSD", 2350.5, 2350.75)
    book = await venue.fetch_order_book("XAU/USD")
    assert [(b.price, b.amount) for b in book.bids] == [(Decimal("2350.50"), Decimal(0))]
    assert [(a.price, a.amount) for a in book.asks] == [(Decimal("2350.75"), Decimal(0))]
    assert (await venue.fetch_order_book("XAU/USD", limit=0)).bids == ()


async def test_balance_is_the_account_currency_with_free_and_used_margin(venue):
    assert await venue.fetch_balance() == {"USD": Balance("USD", Decimal("10000.00"), Decimal("0.00"))}
    await venue.create_order(req("XAU/USD", amount="0.10"))
    bal = (await venue.fetch_balance())["USD"]
    # 0.1 lot x 100 oz x 2345.35 / leverage 100 = 234.535 as a float, i.e. 234.5349999...
    assert bal.used == Decimal("234.53") and bal.total == Decimal("10000.00")


# --------------------------------------------------------------------------- orders


async def test_a_market_order_is_sent_once_and_filled(term, venue):
    order = await venue.create_order(req("EUR/USD", Side.BUY, amount="0.10", cid="m-1"))
    assert order.status is OrderStatus.FILLED and order.filled == Decimal("0.10")
    assert order.average_price == Decimal("1.08520") and order.client_order_id == "m-1"
    [request] = sent(term)
    assert request == {"symbol": "EURUSD", "volume": 0.1, "magic": DEFAULT_MAGIC, "comment": "m-1",
                       "type_time": standin.ORDER_TIME_GTC, "action": standin.TRADE_ACTION_DEAL,
                       "type": standin.ORDER_TYPE_BUY, "deviation": 20, "type_filling": standin.ORDER_FILLING_FOK,
                       "price": 1.0852}


async def test_market_orders_use_the_fill_policy_the_symbol_allows(term, venue):
    await venue.create_order(req("XAU/USD", Side.SELL, amount="0.01"))
    assert sent(term)[-1]["type_filling"] == standin.ORDER_FILLING_IOC and sent(term)[-1]["price"] == 2345.1
    with pytest.raises(OrderRejected, match="does not allow FOK market orders on XAU/USD"):
        await venue.create_order(req("XAU/USD", amount="0.01", cid="fok", tif=TimeInForce.FOK))
    assert len(sent(term)) == 1


async def test_a_limit_order_rests_open(term, venue):
    order = await venue.create_order(req("EUR/USD", Side.BUY, OrderType.LIMIT, "0.25", "lim-1", price="1.08000"))
    assert order.status is OrderStatus.OPEN and order.filled == 0 and order.price == Decimal("1.08000")
    assert int(order.id) in term.orders
    request = sent(term)[-1]
    assert (request["action"], request["type"], request["price"], request["type_filling"]) == \
        (standin.TRADE_ACTION_PENDING, standin.ORDER_TYPE_BUY_LIMIT, 1.08, standin.ORDER_FILLING_RETURN)


async def test_a_stop_limit_order_sends_the_stop_as_price_and_the_limit_as_stoplimit(term, venue):
    order = await venue.create_order(req("BTC/USD", Side.BUY, OrderType.STOP_LIMIT, "0.05", "sl-1",
                                         price="64350.00", stop="64400.00"))
    request = sent(term)[-1]
    assert (request["type"], request["price"], request["stoplimit"]) == \
        (standin.ORDER_TYPE_BUY_STOP_LIMIT, 64400.0, 64350.0)
    fetched = await venue.fetch_order(order.id, "BTC/USD")
    assert (fetched.type, fetched.price, fetched.stop_price) == \
        (OrderType.STOP_LIMIT, Decimal("64350.00"), Decimal("64400.00"))


@pytest.mark.parametrize(("retcode", "error", "words"), [
    (10019, InsufficientFunds, "not have enough free margin"),
    (10006, OrderRejected, "the broker rejected the request"),
    (10004, OrderRejected, "requote"),
    (10014, OrderRejected, "volume is not allowed"),
    (10015, OrderRejected, "price is not allowed"),
    (10018, OrderRejected, "the market is closed"),
    (10027, OrderRejected, "switch on Algo Trading"),
    (10031, VenueUnavailable, "no connection to the broker's trade server"),
    (10012, OrderOutcomeUnknown, "timed out"),
])
async def test_retcodes_become_sentences_and_the_right_error(term, venue, retcode, error, words):
    await venue.load_markets()
    term.next_retcode = retcode
    with pytest.raises(error) as err:
        await venue.create_order(req())
    text = str(err.value)
    assert words in text and f"code {retcode}" in text
    assert_sentence(text)
    if error is VenueUnavailable:
        assert not isinstance(err.value, OrderOutcomeUnknown)  # 10031: provably not executed
    if error is OrderRejected:
        assert not isinstance(err.value, InsufficientFunds)
    assert len(sent(term)) == 1  # never retried


async def test_not_enough_margin_on_a_real_request_is_insufficient_funds(term, venue):
    with pytest.raises(InsufficientFunds, match="MetaTrader 5 refused the buy market order for 10.00 lots of XAU/USD"):
        await venue.create_order(req("XAU/USD", amount="10.00"))
    assert term.positions == {}


async def test_no_answer_to_an_order_is_an_unknown_outcome_never_resent(term, venue):
    await venue.load_markets()
    term.next_send_none = True
    with pytest.raises(OrderOutcomeUnknown) as err:
        await venue.create_order(req(cid="lost-1"))
    assert isinstance(err.value, VenueUnavailable)
    assert err.value.client_order_id == "lost-1"
    assert "Terminal: Call timeout (error -10005)" in str(err.value)
    assert_sentence(str(err.value))
    assert len(sent(term)) == 1


async def test_the_client_id_must_fit_the_comment_unchanged(term, venue):
    await venue.create_order(req(cid="x" * MAX_COMMENT))
    for bad in ("y" * (MAX_COMMENT + 1), "ordre-été", ""):
        with pytest.raises(OrderRejected, match="holds at most 31 plain ASCII characters") as err:
            await venue.create_order(req(cid=bad))
        assert_sentence(str(err.value))
    assert [r["comment"] for r in sent(term)] == ["x" * MAX_COMMENT]


async def test_pending_orders_cannot_be_ioc(term, venue):
    with pytest.raises(OrderRejected, match="rest until cancelled"):
        await venue.create_order(req(type=OrderType.LIMIT, price="1.08", tif=TimeInForce.IOC))
    assert sent(term) == []


async def test_client_id_round_trip_through_the_comment(term, venue):
    resting = await venue.create_order(req("EUR/USD", Side.SELL, OrderType.LIMIT, "0.30", "rt-limit", "1.09000"))
    filled = await venue.create_order(req("BTC/USD", Side.BUY, amount="0.02", cid="rt-market"))
    a = await venue.fetch_order_by_client_id("rt-limit", "EUR/USD")
    assert (a.id, a.client_order_id, a.status, a.side, a.type) == \
        (resting.id, "rt-limit", OrderStatus.OPEN, Side.SELL, OrderType.LIMIT)
    assert a.amount == Decimal("0.30") and a.price == Decimal("1.09000")
    b = await venue.fetch_order_by_client_id("rt-market", "BTC/USD")
    assert (b.id, b.client_order_id, b.status, b.filled) == (filled.id, "rt-market", OrderStatus.FILLED,
                                                             Decimal("0.02"))
    assert b.average_price == Decimal("64265.50") and len(b.fills) == 1 and b.fee == Decimal("0.07")
    with pytest.raises(OrderNotFound):
        await venue.fetch_order_by_client_id("rt-limit", "BTC/USD")  # another symbol
    with pytest.raises(OrderNotFound):
        await venue.fetch_order_by_client_id("never-sent", "EUR/USD")


async def test_client_id_lookup_ignores_orders_not_placed_by_meridian(term, venue):
    await venue.load_markets()
    now = term.now_ms()
    term.orders[42] = standin.TradeOrder(42, now // 1000, now, 0, 0, 0, 2, 0, 2, 1, 0, 0, 0, 0, 0.1, 0.1, 1.08,
                                         0.0, 0.0, 1.0852, 0.0, "EURUSD", "manual", "")
    with pytest.raises(OrderNotFound, match="client id manual"):
        await venue.fetch_order_by_client_id("manual", "EUR/USD")
    assert [o.id for o in await venue.fetch_open_orders()] == ["42"]  # still an open order on the account


async def test_fetch_order_finds_active_then_history_and_reports_fills(term, venue, clock):
    order = await venue.create_order(req("XAU/USD", Side.BUY, OrderType.LIMIT, "0.10", "f-1", "2340.00"))
    assert (await venue.fetch_order(order.id, "XAU/USD")).status is OrderStatus.OPEN
    clock.seconds += 5
    term.fill_pending(int(order.id), 2339.95)
    done = await venue.fetch_order(order.id, "XAU/USD")
    assert done.status is OrderStatus.FILLED and done.filled == Decimal("0.10")
    assert done.average_price == Decimal("2339.95") and done.fills[0].trade_id == str(term.deals[-1].ticket)
    assert done.fee == Decimal("0.35") and done.fee_asset == "USD"
    for missing in ("999", "abc"):
        with pytest.raises(OrderNotFound):
            await venue.fetch_order(missing, "XAU/USD")


async def test_cancel_removes_a_pending_order(term, venue):
    order = await venue.create_order(req("EUR/USD", Side.BUY, OrderType.LIMIT, "0.10", "c-1", "1.07500"))
    canceled = await venue.cancel_order(order.id, "EUR/USD")
    assert canceled.status is OrderStatus.CANCELED and canceled.id == order.id
    assert sent(term)[-1] == {"action": standin.TRADE_ACTION_REMOVE, "order": int(order.id)}
    assert (await venue.fetch_order(order.id, "EUR/USD")).status is OrderStatus.CANCELED
    with pytest.raises(OrderRejected, match="already canceled; there is nothing to cancel"):
        await venue.cancel_order(order.id, "EUR/USD")
    with pytest.raises(OrderNotFound):
        await venue.cancel_order("123", "EUR/USD")


async def test_a_refused_cancel_says_why(term, venue):
    order = await venue.create_order(req("EUR/USD", Side.BUY, OrderType.LIMIT, "0.10", "c-2", "1.07500"))
    term.next_retcode = 10029
    with pytest.raises(OrderRejected, match="could not cancel order .*frozen.*code 10029"):
        await venue.cancel_order(order.id, "EUR/USD")
    assert int(order.id) in term.orders


async def test_open_orders_by_symbol(venue):
    a = await venue.create_order(req("EUR/USD", Side.BUY, OrderType.LIMIT, "0.10", "o-1", "1.07"))
    b = await venue.create_order(req("XAU/USD", Side.SELL, OrderType.LIMIT, "0.10", "o-2", "2400.00"))
    await venue.create_order(req("BTC/USD", amount="0.01", cid="o-3"))  # filled: not open
    assert {o.id for o in await venue.fetch_open_orders()} == {a.id, b.id}
    [only] = await venue.fetch_open_orders("XAU/USD")
    assert isinstance(only, Order) and (only.id, only.symbol, only.client_order_id) == (b.id, "XAU/USD", "o-2")


# --------------------------------------------------------------------------- the live stream and closing


async def test_watch_polls_and_yields_only_when_the_tick_changes(term, venue):
    stream = venue.watch(["EUR/USD"])
    first = await asyncio.wait_for(anext(stream), 2)
    assert first.bid == Decimal("1.08512")

    nxt = asyncio.ensure_future(anext(stream))
    polls = sum(1 for c in term.calls if c[0] == "symbol_info_tick")
    for _ in range(200):  # let at least five more polls of an unchanged tick happen
        await asyncio.sleep(0.01)
        if sum(1 for c in term.calls if c[0] == "symbol_info_tick") >= polls + 5:
            break
    assert sum(1 for c in term.calls if c[0] == "symbol_info_tick") >= polls + 5
    assert not nxt.done()  # unchanged ticks yield nothing

    term.set_tick("EURUSD", 1.08600, 1.08608)
    second = await asyncio.wait_for(nxt, 2)
    assert (second.bid, second.ask) == (Decimal("1.08600"), Decimal("1.08608"))
    assert second.ts > first.ts
    await stream.aclose()


async def test_watch_ends_when_the_venue_closes(term, venue):
    stream = venue.watch(["XAU/USD", "BTC/USD"])
    got = {(await asyncio.wait_for(anext(stream), 2)).symbol for _ in range(2)}
    assert got == {"XAU/USD", "BTC/USD"}
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.03)
    await venue.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 2)


async def test_watch_refuses_an_unknown_symbol(venue):
    with pytest.raises(UnknownSymbol):
        await anext(venue.watch(["EUR/USD", "DOGE/EUR"]))


async def test_close_shuts_the_terminal_down_on_the_worker_and_stops(term, venue):
    await venue.load_markets()
    await venue.close()
    await venue.close()
    assert term.call_names()[-1] == "shutdown" and term.call_names().count("shutdown") == 1
    assert venue._executor._shutdown
    with pytest.raises(VenueUnavailable, match="closed"):
        await venue.fetch_balance()
    with pytest.raises(VenueUnavailable, match="closed; the order was not sent"):
        await venue.create_order(req())
    assert term.violations == []


async def test_the_venue_satisfies_the_protocol(venue):
    assert isinstance(venue, Venue)
    assert (venue.name, venue.title) == ("mt5", "MetaTrader 5")


# --------------------------------------------------------------------------- the guard


async def test_a_terminal_that_keeps_failing_opens_the_breaker_and_then_fails_fast(term, clock, monkeypatch):
    from app.resilience.guard import Guard, GuardConfig

    guard = Guard("exchange:mt5", GuardConfig(failure_threshold=2, retry_attempts=1, reset_timeout=60,
                                              rate_per_second=1000, burst=1000))
    venue = MT5Venue(MT5Config(poll_interval_ms=10), module=term, clock=clock, guard=guard)
    try:
        await venue.connect()

        def broken(*_a, **_k):  # noqa: ANN002, ANN003
            raise OSError("pipe closed")

        monkeypatch.setattr(term, "account_info", broken)
        for _ in range(2):
            with pytest.raises(VenueUnavailable) as err:
                await venue.fetch_balance()
            assert_sentence(str(err.value))
        assert guard.health().state == "open"
        calls = len(term.calls)
        with pytest.raises(VenueUnavailable) as err:
            await venue.fetch_balance()
        assert len(term.calls) == calls  # failed fast: the terminal was not asked again
        assert "MetaTrader" in str(err.value) or "paused" in str(err.value).lower()
    finally:
        await venue.close()


async def test_an_unknown_symbol_never_counts_against_the_terminal(venue):
    await venue.connect()
    for _ in range(6):
        with pytest.raises(VenueError):
            await venue.fetch_ticker("NOPE/XYZ")
    health = venue.guard.health()
    assert health.state == "closed" and health.failures == 0


async def test_an_order_the_terminal_does_not_answer_in_time_is_unknown_not_resent(term, clock, monkeypatch):
    from app.resilience.guard import Guard, GuardConfig

    guard = Guard("exchange:mt5", GuardConfig(call_timeout=0.2, rate_per_second=1000, burst=1000))
    venue = MT5Venue(MT5Config(poll_interval_ms=10), module=term, clock=clock, guard=guard)
    try:
        await venue.connect()
        await venue.load_markets()
        real = term.order_send

        def slow(request):  # noqa: ANN001, ANN202
            time.sleep(0.5)
            return real(request)

        monkeypatch.setattr(term, "order_send", slow)
        with pytest.raises(OrderOutcomeUnknown) as err:
            await venue.create_order(req(cid="cid-slow"))
        assert err.value.client_order_id == "cid-slow"
        await asyncio.sleep(0.6)
        assert len([c for c in term.calls if c[0] == "order_send"]) == 1  # tried exactly once
    finally:
        await venue.close()
