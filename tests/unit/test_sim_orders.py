"""Orders on the simulated market, through the venue's public methods only.

Every check is against what the venue itself shows (its book, its prints, its
balances): market orders walk the book, resting orders fill when the tape reaches
them, funds are reserved and released exactly, the exchange's rules refuse bad
orders with a sentence, and no sequence of orders makes money appear, vanish or
go negative.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from decimal import Decimal

import pytest

from app.domain import Balance, Order, OrderRequest, OrderStatus, OrderType, Side, TimeInForce, Trade
from app.venues.base import InsufficientFunds, OrderNotFound, OrderRejected, UnknownSymbol, VenueError
from app.venues.sim import SimConfig, SimVenue
from app.venues.sim_model import DEFAULT_INSTRUMENTS, Instrument

MIN = 60_000
T0 = 1_699_920_000_000 + 3 * MIN + 4_321
BTC = "BTC/USDT"
ETH = "ETH/USDT"
QUOTE_UNIT = Decimal("1e-8")  # the finest quote amount a fee may be rounded to

_ids = itertools.count(1)


class FakeClock:
    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000.0


def make(seed: int = 7, **kw) -> tuple[SimVenue, FakeClock]:
    clock = FakeClock()
    kw.setdefault("history_days", 1)
    venue = SimVenue(SimConfig(seed=seed, **kw), clock=clock)
    advance(venue, clock, 2_000)
    return venue, clock


def advance(venue: SimVenue, clock: FakeClock, duration_ms: int, every_ms: int = 250) -> list:
    events: list = []
    end = clock.ms + duration_ms
    while clock.ms < end:
        clock.ms = min(end, clock.ms + every_ms)
        events.extend(venue.step(clock.ms))
    return events


def req(
    symbol: str,
    side: Side,
    type_: OrderType,
    amount: str | Decimal,
    price: str | Decimal | None = None,
    *,
    stop: str | Decimal | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    post_only: bool = False,
    cid: str | None = None,
) -> OrderRequest:
    return OrderRequest(
        symbol=symbol,
        side=side,
        type=type_,
        amount=Decimal(amount),
        client_order_id=cid or f"t-{next(_ids)}",
        price=None if price is None else Decimal(price),
        stop_price=None if stop is None else Decimal(stop),
        time_in_force=tif,
        post_only=post_only,
    )


def fee_ok(fee: Decimal, notional: Decimal, rate: Decimal) -> bool:
    """The fee is the notional times the rate, to the quote's precision (never the price tick's)."""
    return abs(fee - notional * rate) <= QUOTE_UNIT


def notional(order: Order) -> Decimal:
    return sum((f.price * f.amount for f in order.fills), Decimal(0))


def delta(order: Order, base: str, quote: str) -> dict[str, Decimal]:
    """What an order's fills did to the account."""
    d = {base: Decimal(0), quote: Decimal(0)}
    for f in order.fills:
        assert f.fee_asset == quote
        if f.side is Side.BUY:
            d[base] += f.amount
            d[quote] -= f.price * f.amount + f.fee
        else:
            d[base] -= f.amount
            d[quote] += f.price * f.amount - f.fee
    return d


def free(b: dict[str, Balance], asset: str) -> Decimal:
    return b[asset].free if asset in b else Decimal(0)


def used(b: dict[str, Balance], asset: str) -> Decimal:
    return b[asset].used if asset in b else Decimal(0)


def total(b: dict[str, Balance], asset: str) -> Decimal:
    return b[asset].total if asset in b else Decimal(0)


def assert_not_negative(b: dict[str, Balance]) -> None:
    for bal in b.values():
        assert bal.free >= 0, bal
        assert bal.used >= 0, bal


def assert_same_balances(a: dict[str, Balance], b: dict[str, Balance]) -> None:
    assets = set(a) | set(b)
    for asset in assets:
        assert (free(a, asset), used(a, asset)) == (free(b, asset), used(b, asset)), asset


def assert_fills_consistent(o: Order) -> None:
    assert o.filled == sum((f.amount for f in o.fills), Decimal(0))
    assert o.fee == sum((f.fee for f in o.fills), Decimal(0))
    if o.filled:
        assert o.average_price == pytest.approx(notional(o) / o.filled, rel=Decimal("1e-20"))
    for f in o.fills:
        assert f.order_id == o.id and f.symbol == o.symbol and f.side is o.side and f.amount > 0


async def until_print(venue: SimVenue, clock: FakeClock, symbol: str, reached, watch: Order, max_minutes: int = 240):
    """Step the market until a trade of `symbol` satisfies `reached`; until then `watch` must not fill."""
    for _ in range(max_minutes * 60):
        clock.ms += 1_000
        for e in venue.step(clock.ms):
            if isinstance(e, Trade) and e.symbol == symbol and reached(e.price):
                return e
        o = await venue.fetch_order(watch.id, symbol)
        assert o.status is watch.status and o.filled == watch.filled and o.fills == watch.fills, o
    pytest.fail(f"no {symbol} print reached the level in {max_minutes} market minutes")


# -- market orders -------------------------------------------------------------------------------


async def test_a_market_buy_fills_at_once_at_the_ask_and_pays_the_taker_fee() -> None:
    venue, _ = make()
    m = (await venue.load_markets())[BTC]
    book = await venue.fetch_order_book(BTC)
    b0 = await venue.fetch_balance()
    o = await venue.create_order(req(BTC, Side.BUY, OrderType.MARKET, "0.0123"))
    assert o.status is OrderStatus.FILLED and o.filled == Decimal("0.0123") and o.remaining == 0
    assert book.asks[0].amount >= o.amount  # small enough for the touch
    assert o.average_price == book.asks[0].price
    assert all(not f.is_maker for f in o.fills)
    assert o.fee_asset == "USDT" and o.fee > 0 and fee_ok(o.fee, notional(o), m.taker_fee)
    assert_fills_consistent(o)
    b1 = await venue.fetch_balance()
    assert free(b1, "USDT") == free(b0, "USDT") - notional(o) - o.fee
    assert free(b1, "BTC") == free(b0, "BTC") + o.amount
    assert used(b1, "USDT") == used(b0, "USDT") == 0
    assert await venue.fetch_open_orders() == []
    assert await venue.fetch_order(o.id, BTC) == o
    assert await venue.fetch_order_by_client_id(o.client_order_id, BTC) == o


async def test_a_market_sell_fills_at_once_at_the_bid() -> None:
    venue, _ = make()
    m = (await venue.load_markets())[ETH]
    book = await venue.fetch_order_book(ETH)
    b0 = await venue.fetch_balance()
    o = await venue.create_order(req(ETH, Side.SELL, OrderType.MARKET, "0.5"))
    assert o.status is OrderStatus.FILLED and o.filled == Decimal("0.5")
    assert o.average_price is not None and o.average_price <= book.bids[0].price
    assert o.average_price == book.bids[0].price  # 0.5 ETH fits at the touch
    assert fee_ok(o.fee, notional(o), m.taker_fee) and o.fee > 0
    b1 = await venue.fetch_balance()
    assert free(b1, "USDT") == free(b0, "USDT") + notional(o) - o.fee
    assert free(b1, "ETH") == free(b0, "ETH") - Decimal("0.5")


async def test_a_large_market_order_walks_the_book() -> None:
    venue, _ = make(balances={"USDT": Decimal("10000000"), "BTC": Decimal("100")})
    book = await venue.fetch_order_book(BTC)
    big = book.asks[0].amount + book.asks[1].amount + book.asks[2].amount / 2
    big = big.quantize(Decimal("0.00001"))
    small = await venue.create_order(req(BTC, Side.BUY, OrderType.MARKET, "0.001"))
    large = await venue.create_order(req(BTC, Side.BUY, OrderType.MARKET, big))
    assert large.status is OrderStatus.FILLED and large.filled == big
    assert [f.price for f in large.fills] == [lv.price for lv in book.asks[:3]]
    assert [f.amount for f in large.fills[:2]] == [lv.amount for lv in book.asks[:2]]
    assert small.average_price is not None and large.average_price is not None
    assert large.average_price > small.average_price >= book.asks[0].price
    assert large.average_price < book.asks[2].price
    sells = await venue.fetch_order_book(BTC)
    big_sell = (sells.bids[0].amount + sells.bids[1].amount * 2).quantize(Decimal("0.00001"))
    s = await venue.create_order(req(BTC, Side.SELL, OrderType.MARKET, big_sell))
    assert [f.price for f in s.fills] == [lv.price for lv in sells.bids[: len(s.fills)]]
    assert s.average_price is not None and s.average_price < sells.bids[0].price


async def test_a_market_order_deeper_than_the_book_fills_what_is_there_and_expires_the_rest() -> None:
    venue, _ = make(balances={"USDT": Decimal("1000000000")})
    book = await venue.fetch_order_book(BTC)
    depth = sum((lv.amount for lv in book.asks), Decimal(0))
    b0 = await venue.fetch_balance()
    o = await venue.create_order(req(BTC, Side.BUY, OrderType.MARKET, depth * 2))
    assert o.filled == depth and o.status is OrderStatus.CANCELED
    b1 = await venue.fetch_balance()
    assert used(b1, "USDT") == 0
    assert total(b1, "USDT") == total(b0, "USDT") - notional(o) - o.fee
    assert_not_negative(b1)


# -- limit orders --------------------------------------------------------------------------------


async def test_a_limit_buy_below_the_market_rests_then_fills_at_its_price_as_maker() -> None:
    venue, clock = make(seed=21)
    m = (await venue.load_markets())[BTC]
    book = await venue.fetch_order_book(BTC)
    price = book.bids[0].price - Decimal("25")
    amount = Decimal("0.02")
    b0 = await venue.fetch_balance()
    o = await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, amount, price))
    assert o.status is OrderStatus.OPEN and o.filled == 0 and o.fills == () and o.price == price
    b1 = await venue.fetch_balance()
    reserved = free(b0, "USDT") - free(b1, "USDT")
    assert used(b1, "USDT") - used(b0, "USDT") == reserved
    assert amount * price <= reserved <= amount * price * (1 + m.taker_fee) + Decimal("0.01")
    assert free(b1, "BTC") == free(b0, "BTC")
    assert [x.id for x in await venue.fetch_open_orders(BTC)] == [o.id]
    assert [x.id for x in await venue.fetch_open_orders()] == [o.id]
    assert await venue.fetch_open_orders(ETH) == []

    hit = await until_print(venue, clock, BTC, lambda p: p <= price, o)
    done = await venue.fetch_order(o.id, BTC)
    assert done.status is OrderStatus.FILLED and done.filled == amount
    assert done.average_price == price
    assert len(done.fills) == 1 and done.fills[0].is_maker and done.fills[0].ts == hit.ts
    assert fee_ok(done.fee, amount * price, m.maker_fee) and done.fee > 0
    b2 = await venue.fetch_balance()
    assert used(b2, "USDT") == used(b0, "USDT")
    assert free(b2, "USDT") == free(b0, "USDT") - amount * price - done.fee
    assert free(b2, "BTC") == free(b0, "BTC") + amount
    assert await venue.fetch_open_orders() == []
    assert await venue.fetch_order_by_client_id(o.client_order_id, BTC) == done


async def test_a_limit_sell_above_the_market_rests_then_fills_at_its_price() -> None:
    venue, clock = make(seed=22)
    m = (await venue.load_markets())[ETH]
    book = await venue.fetch_order_book(ETH)
    price = book.asks[0].price + Decimal("1.5")
    b0 = await venue.fetch_balance()
    o = await venue.create_order(req(ETH, Side.SELL, OrderType.LIMIT, "2", price))
    assert o.status is OrderStatus.OPEN
    b1 = await venue.fetch_balance()
    assert (free(b1, "ETH"), used(b1, "ETH")) == (free(b0, "ETH") - 2, used(b0, "ETH") + 2)
    await until_print(venue, clock, ETH, lambda p: p >= price, o)
    done = await venue.fetch_order(o.id, ETH)
    assert done.status is OrderStatus.FILLED and done.average_price == price and done.fills[0].is_maker
    assert fee_ok(done.fee, 2 * price, m.maker_fee)
    b2 = await venue.fetch_balance()
    assert (free(b2, "ETH"), used(b2, "ETH")) == (free(b0, "ETH") - 2, used(b0, "ETH"))
    assert free(b2, "USDT") == free(b0, "USDT") + 2 * price - done.fee


async def test_cancelling_releases_the_reserved_funds_exactly() -> None:
    venue, _ = make()
    book = await venue.fetch_order_book(BTC)
    b0 = await venue.fetch_balance()
    buy = await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, "0.37", book.bids[5].price))
    sell = await venue.create_order(req(BTC, Side.SELL, OrderType.LIMIT, "0.5", book.asks[5].price))
    mid = await venue.fetch_balance()
    assert used(mid, "USDT") > 0 and used(mid, "BTC") == Decimal("0.5")
    c1 = await venue.cancel_order(buy.id, BTC)
    c2 = await venue.cancel_order(sell.id, BTC)
    assert c1.status is OrderStatus.CANCELED and c2.status is OrderStatus.CANCELED
    assert c1.filled == 0 and c1.fee == 0
    assert_same_balances(await venue.fetch_balance(), b0)
    assert await venue.fetch_open_orders() == []
    assert (await venue.fetch_order(buy.id, BTC)).status is OrderStatus.CANCELED
    with pytest.raises(VenueError):
        await venue.cancel_order(buy.id, BTC)  # already cancelled: nothing to cancel, nothing changes
    assert_same_balances(await venue.fetch_balance(), b0)


async def test_a_marketable_limit_takes_liquidity_at_once() -> None:
    venue, _ = make()
    m = (await venue.load_markets())[BTC]
    book = await venue.fetch_order_book(BTC)
    b0 = await venue.fetch_balance()
    o = await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, "0.001", book.asks[3].price))
    assert o.status is OrderStatus.FILLED
    assert o.average_price == book.asks[0].price  # the book's price, better than the limit
    assert not o.fills[0].is_maker and fee_ok(o.fee, notional(o), m.taker_fee)
    b1 = await venue.fetch_balance()
    assert used(b1, "USDT") == 0
    assert free(b1, "USDT") == free(b0, "USDT") - notional(o) - o.fee


async def test_a_marketable_limit_larger_than_the_touch_rests_the_rest() -> None:
    venue, clock = make(balances={"USDT": Decimal("10000000")})
    book = await venue.fetch_order_book(BTC)
    amount = (book.asks[0].amount + book.asks[1].amount + Decimal("0.5")).quantize(Decimal("0.00001"))
    limit = book.asks[1].price
    o = await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, amount, limit))
    assert o.status is OrderStatus.PARTIALLY_FILLED
    assert o.filled == book.asks[0].amount + book.asks[1].amount
    assert all(f.price <= limit for f in o.fills)
    assert [x.id for x in await venue.fetch_open_orders(BTC)] == [o.id]
    b = await venue.fetch_balance()
    assert used(b, "USDT") >= o.remaining * limit
    c = await venue.cancel_order(o.id, BTC)
    assert c.status is OrderStatus.CANCELED and c.filled == o.filled
    b2 = await venue.fetch_balance()
    assert used(b2, "USDT") == 0
    assert free(b2, "USDT") == Decimal("10000000") - notional(o) - o.fee


# -- stop-limit -----------------------------------------------------------------------------------------


async def test_a_buy_stop_limit_waits_for_its_stop_then_buys() -> None:
    venue, clock = make(seed=5)
    last = (await venue.fetch_ticker(BTC)).last
    stop = last + Decimal("30")
    limit = stop + Decimal("80")
    b0 = await venue.fetch_balance()
    o = await venue.create_order(req(BTC, Side.BUY, OrderType.STOP_LIMIT, "0.01", limit, stop=stop))
    assert o.status is OrderStatus.OPEN and o.filled == 0 and o.stop_price == stop
    assert used(await venue.fetch_balance(), "USDT") > used(b0, "USDT")
    hit = await until_print(venue, clock, BTC, lambda p: p >= stop, o)
    done = await venue.fetch_order(o.id, BTC)
    assert done.status is OrderStatus.FILLED, (hit, done)
    assert done.average_price is not None and stop <= done.average_price <= limit
    b1 = await venue.fetch_balance()
    assert used(b1, "USDT") == 0
    assert free(b1, "USDT") == free(b0, "USDT") - notional(done) - done.fee


async def test_a_sell_stop_limit_waits_for_its_stop_then_sells() -> None:
    venue, clock = make(seed=6)
    last = (await venue.fetch_ticker(BTC)).last
    stop = last - Decimal("30")
    limit = stop - Decimal("80")
    o = await venue.create_order(req(BTC, Side.SELL, OrderType.STOP_LIMIT, "0.01", limit, stop=stop))
    assert o.status is OrderStatus.OPEN and o.filled == 0
    await until_print(venue, clock, BTC, lambda p: p <= stop, o)
    done = await venue.fetch_order(o.id, BTC)
    assert done.status is OrderStatus.FILLED
    assert done.average_price is not None and limit <= done.average_price <= stop


# -- post-only, IOC, FOK -------------------------------------------------------------------------------


async def test_a_post_only_order_that_would_cross_is_rejected() -> None:
    venue, _ = make()
    book = await venue.fetch_order_book(BTC)
    b0 = await venue.fetch_balance()
    with pytest.raises(OrderRejected) as err:
        await venue.create_order(
            req(BTC, Side.BUY, OrderType.LIMIT, "0.01", book.asks[0].price, post_only=True, cid="po-1")
        )
    assert "post-only" in str(err.value).lower()
    # Reconciling by client order id (the design's recovery path) finds it rejected, and why.
    rejected = await venue.fetch_order_by_client_id("po-1", BTC)
    assert rejected.status is OrderStatus.REJECTED and rejected.filled == 0 and rejected.fills == ()
    assert rejected.reason == str(err.value)
    with pytest.raises(OrderRejected):
        await venue.create_order(req(BTC, Side.SELL, OrderType.LIMIT, "0.01", book.bids[2].price, post_only=True))
    assert_same_balances(await venue.fetch_balance(), b0)
    assert await venue.fetch_open_orders() == []
    ok = await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, "0.01", book.bids[0].price, post_only=True))
    assert ok.status is OrderStatus.OPEN and ok.filled == 0


async def test_ioc_fills_what_it_can_and_cancels_the_rest() -> None:
    venue, _ = make(balances={"USDT": Decimal("10000000")})
    book = await venue.fetch_order_book(BTC)
    amount = (book.asks[0].amount * 3).quantize(Decimal("0.00001"))
    o = await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, amount, book.asks[0].price, tif=TimeInForce.IOC))
    assert o.status is OrderStatus.CANCELED and o.filled == book.asks[0].amount
    b = await venue.fetch_balance()
    assert used(b, "USDT") == 0
    assert free(b, "USDT") == Decimal("10000000") - notional(o) - o.fee
    assert await venue.fetch_open_orders() == []
    # Below the market an IOC order has nothing to take: it ends at once, untouched.
    b0 = await venue.fetch_balance()
    o2 = await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, "0.1", book.bids[3].price, tif=TimeInForce.IOC))
    assert o2.status is OrderStatus.CANCELED and o2.filled == 0
    assert_same_balances(await venue.fetch_balance(), b0)


async def test_fok_fills_all_at_once_or_nothing() -> None:
    venue, _ = make(balances={"USDT": Decimal("10000000")})
    book = await venue.fetch_order_book(BTC)
    b0 = await venue.fetch_balance()
    too_big = book.asks[0].amount + book.asks[1].amount + Decimal("0.00001")
    o = await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, too_big, book.asks[1].price, tif=TimeInForce.FOK))
    assert o.status is OrderStatus.CANCELED and o.filled == 0 and o.fills == ()
    assert_same_balances(await venue.fetch_balance(), b0)
    fits = book.asks[0].amount + book.asks[1].amount
    o2 = await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, fits, book.asks[1].price, tif=TimeInForce.FOK))
    assert o2.status is OrderStatus.FILLED and o2.filled == fits


# -- refusals ---------------------------------------------------------------------------------------------


def _numbers(text: str) -> list[Decimal]:
    return [Decimal(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]


async def test_insufficient_funds_names_the_asset_and_the_amounts() -> None:
    venue, _ = make()
    book = await venue.fetch_order_book(BTC)
    b0 = await venue.fetch_balance()
    with pytest.raises(InsufficientFunds) as err:
        await venue.create_order(req(BTC, Side.BUY, OrderType.MARKET, "1.5"))
    msg = str(err.value)
    assert "USDT" in msg and "100000" in msg
    assert any(n >= Decimal("1.5") * book.asks[0].price for n in _numbers(msg)), msg
    with pytest.raises(InsufficientFunds) as err:
        await venue.create_order(req(BTC, Side.SELL, OrderType.LIMIT, "1.5", book.asks[0].price))
    msg = str(err.value)
    assert "BTC" in msg and "1.5" in msg and Decimal(1) in _numbers(msg)
    with pytest.raises(InsufficientFunds) as err:
        await venue.create_order(req("SOL/USDT", Side.SELL, OrderType.MARKET, "1"))
    assert "SOL" in str(err.value)
    assert_same_balances(await venue.fetch_balance(), b0)
    assert await venue.fetch_open_orders() == []


async def test_funds_held_by_open_orders_are_not_free() -> None:
    venue, _ = make()
    book = await venue.fetch_order_book(BTC)
    await venue.create_order(req(BTC, Side.SELL, OrderType.LIMIT, "0.8", book.asks[4].price))
    with pytest.raises(InsufficientFunds) as err:
        await venue.create_order(req(BTC, Side.SELL, OrderType.MARKET, "0.3"))
    assert "0.2" in str(err.value)


TST = Instrument("TST/USDT", 100.0, 0.6, 5e7, 0.5, Decimal("0.01"), Decimal("0.01"), Decimal("0.1"), Decimal("10"))


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (req(BTC, Side.BUY, OrderType.LIMIT, "0.000015", "50000"), ["0.000015", "0.00001"]),
        (req("TST/USDT", Side.BUY, OrderType.LIMIT, "0.05", "90"), ["0.05", "0.1", "minimum"]),
        (req(BTC, Side.BUY, OrderType.LIMIT, "0.00004", "50000"), ["minimum", "5", "USDT"]),
        (req("TST/USDT", Side.BUY, OrderType.LIMIT, "0.1", "90"), ["minimum", "10", "USDT"]),
        (req(BTC, Side.BUY, OrderType.MARKET, "0.00001"), ["minimum", "USDT"]),
        (req(BTC, Side.BUY, OrderType.LIMIT, "0.01", "50000.005"), ["50000.005", "0.01"]),
        (req(BTC, Side.BUY, OrderType.LIMIT, "0", "50000"), ["amount"]),
        (req(BTC, Side.SELL, OrderType.MARKET, "-0.01"), ["amount"]),
        (req(BTC, Side.BUY, OrderType.LIMIT, "NaN", "50000"), ["amount"]),
        (req(BTC, Side.BUY, OrderType.LIMIT, "0.01"), ["price"]),
        (req(BTC, Side.BUY, OrderType.LIMIT, "0.01", "-5"), ["price"]),
        (req(BTC, Side.BUY, OrderType.STOP_LIMIT, "0.01", "50000"), ["stop"]),
        (req(BTC, Side.BUY, OrderType.STOP_LIMIT, "0.01", "50000", stop="50000.001"), ["50000.001"]),
    ],
    ids=[
        "amount-off-step", "below-min-amount", "below-min-notional", "below-min-notional-2", "market-below-min-notional",
        "price-off-tick", "zero-amount", "negative-amount", "nan-amount", "no-price", "negative-price", "no-stop",
        "stop-off-tick",
    ],
)  # fmt: skip
async def test_orders_breaking_the_markets_rules_are_rejected_with_a_reason(request_: OrderRequest, words) -> None:
    venue, _ = make(instruments=(DEFAULT_INSTRUMENTS[0], TST), balances={"USDT": Decimal("1000000"), "BTC": Decimal(1)})
    b0 = await venue.fetch_balance()
    with pytest.raises(OrderRejected) as err:
        await venue.create_order(request_)
    assert not isinstance(err.value, InsufficientFunds)
    for w in words:
        assert w.lower() in str(err.value).lower(), (w, str(err.value))
    assert_same_balances(await venue.fetch_balance(), b0)
    assert await venue.fetch_open_orders() == []


async def test_an_absurd_amount_is_rejected_in_words() -> None:
    venue, _ = make()
    with pytest.raises(OrderRejected):
        await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, "1e40", "50000"))
    with pytest.raises(OrderRejected):
        await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, "0.01", "1e40"))


async def test_a_reused_client_order_id_is_rejected() -> None:
    venue, _ = make()
    book = await venue.fetch_order_book(BTC)
    first = await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, "0.01", book.bids[3].price, cid="mine-1"))
    b0 = await venue.fetch_balance()
    with pytest.raises(OrderRejected) as err:
        await venue.create_order(req(BTC, Side.BUY, OrderType.MARKET, "0.01", cid="mine-1"))
    assert "mine-1" in str(err.value)
    assert_same_balances(await venue.fetch_balance(), b0)
    assert await venue.fetch_order_by_client_id("mine-1", BTC) == first
    assert [o.id for o in await venue.fetch_open_orders()] == [first.id]


async def test_unknown_orders_are_not_found() -> None:
    venue, _ = make()
    with pytest.raises(OrderNotFound):
        await venue.fetch_order("SIM-999", BTC)
    with pytest.raises(OrderNotFound):
        await venue.cancel_order("SIM-999", BTC)
    with pytest.raises(OrderNotFound):
        await venue.fetch_order_by_client_id("never-sent", BTC)


async def test_an_order_for_an_unlisted_symbol_is_refused() -> None:
    venue, _ = make()
    with pytest.raises(UnknownSymbol) as err:
        await venue.create_order(req("FOO/USDT", Side.BUY, OrderType.MARKET, "1"))
    assert "FOO/USDT" in str(err.value) and BTC in str(err.value)


# -- the account never goes wrong -------------------------------------------------------------------------


async def _min_accepted_balance(make_venue, order: OrderRequest, hi: Decimal) -> Decimal:
    """The least USDT balance the venue accepts `order` with (binary search in 1e-8 steps)."""
    lo_units, hi_units = 0, int(hi / QUOTE_UNIT)
    while hi_units - lo_units > 1:
        mid = (lo_units + hi_units) // 2
        venue = await make_venue(mid * QUOTE_UNIT)
        try:
            await venue.create_order(order)
        except InsufficientFunds:
            lo_units = mid
        else:
            hi_units = mid
    return hi_units * QUOTE_UNIT


@pytest.mark.parametrize("amount", ["0.0001", "0.00013", "0.00057", "0.01234", "0.0999"])
@pytest.mark.parametrize("kind", ["market", "marketable-limit"])
async def test_buying_with_every_last_unit_never_leaves_a_negative_balance(amount: str, kind: str) -> None:
    async def make_venue(usdt: Decimal) -> SimVenue:
        venue, _ = make(seed=13, instruments=DEFAULT_INSTRUMENTS[:1], balances={"USDT": usdt})
        return venue

    probe = await make_venue(Decimal(0))
    book = await probe.fetch_order_book(BTC)
    price = None if kind == "market" else book.asks[0].price
    type_ = OrderType.MARKET if kind == "market" else OrderType.LIMIT
    order = req(BTC, Side.BUY, type_, amount, price)
    least = await _min_accepted_balance(make_venue, order, Decimal(amount) * book.asks[0].price * 2)
    venue = await make_venue(least)
    o = await venue.create_order(order)
    assert o.status is OrderStatus.FILLED
    b = await venue.fetch_balance()
    assert_not_negative(b)
    assert free(b, "USDT") == least - notional(o) - o.fee
    assert free(b, "BTC") == Decimal(amount)


async def test_an_order_sequence_conserves_value_and_never_goes_negative() -> None:
    rng = random.Random(1234)
    venue, clock = make(seed=31, balances={"USDT": Decimal("50000"), "BTC": Decimal("0.5"), "ETH": Decimal("5")})
    markets = await venue.load_markets()
    start = await venue.fetch_balance()
    placed: list[str] = []
    outcomes: dict[str, int] = {}
    for _ in range(250):
        symbol = rng.choice([BTC, ETH, "XRP/USDT"])
        m = markets[symbol]
        book = await venue.fetch_order_book(symbol)
        before = await venue.fetch_balance()
        action = rng.choice(["market", "limit", "limit", "marketable", "stop", "ioc", "fok", "cancel", "wait", "wait"])
        side = rng.choice([Side.BUY, Side.SELL])
        touch = book.asks[0].price if side is Side.BUY else book.bids[0].price
        away = -1 if side is Side.BUY else 1
        budget = Decimal(rng.choice([20, 150, 900, 4000]))
        amount = max(m.min_amount, (budget / touch).quantize(m.amount_step))
        request: OrderRequest | None = None
        if action == "market":
            request = req(symbol, side, OrderType.MARKET, amount)
        elif action == "limit":
            price = touch + away * m.price_tick * rng.randint(1, 400)
            request = req(symbol, side, OrderType.LIMIT, amount, price)
        elif action in ("marketable", "ioc", "fok"):
            price = touch - away * m.price_tick * rng.randint(0 if action == "marketable" else -20, 30)
            tif = {"ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}.get(action, TimeInForce.GTC)
            request = req(symbol, side, OrderType.LIMIT, amount, price, tif=tif)
        elif action == "stop":
            stop = touch - away * m.price_tick * rng.randint(1, 300)
            price = stop - away * m.price_tick * rng.randint(0, 100)
            request = req(symbol, side, OrderType.STOP_LIMIT, amount, price, stop=stop)
        elif action == "cancel":
            open_ = await venue.fetch_open_orders()
            if open_:
                await venue.cancel_order(rng.choice(open_).id, symbol)
                outcomes["cancelled"] = outcomes.get("cancelled", 0) + 1
        else:
            advance(venue, clock, rng.randint(1_000, 90_000), every_ms=1_000)
        if request is not None:
            try:
                o = await venue.create_order(request)
            except OrderRejected as exc:
                assert_same_balances(await venue.fetch_balance(), before)
                outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
            else:
                placed.append(o.id)
                outcomes[o.status.value] = outcomes.get(o.status.value, 0) + 1
        await _check_account(venue, markets, start, placed)
    # The sequence exercised the interesting paths, or it proves little.
    assert outcomes.get("filled", 0) > 20 and outcomes.get("open", 0) > 20, outcomes
    assert outcomes.get("InsufficientFunds", 0) > 0 and outcomes.get("cancelled", 0) > 5, outcomes
    assert outcomes.get("canceled", 0) > 3, outcomes  # IOC / FOK that found nothing to take
    orders = [await venue.fetch_order(i, BTC) for i in placed]
    assert sum(1 for o in orders if o.fills and o.fills[-1].is_maker) > 5


async def _check_account(venue: SimVenue, markets, start: dict[str, Balance], placed: list[str]) -> None:
    b = await venue.fetch_balance()
    assert_not_negative(b)
    orders = [await venue.fetch_order(i, BTC) for i in placed]
    expected = {a: total(start, a) for a in set(start) | set(b)}
    for o in orders:
        assert_fills_consistent(o)
        m = markets[o.symbol]
        for asset, d in delta(o, m.base, m.quote).items():
            expected[asset] = expected.get(asset, Decimal(0)) + d
    for asset, want in expected.items():
        assert total(b, asset) == want, asset
    open_ = [o for o in orders if not o.status.is_final]
    assert sorted(o.id for o in open_) == sorted(o.id for o in await venue.fetch_open_orders())
    for asset in b:
        sells = sum((o.remaining for o in open_ if o.side is Side.SELL and markets[o.symbol].base == asset), Decimal(0))
        buys = sum(
            (o.remaining * o.price for o in open_ if o.side is Side.BUY and markets[o.symbol].quote == asset and o.price),
            Decimal(0),
        )
        assert used(b, asset) >= sells + buys, asset
        if not any(markets[o.symbol].quote == asset and o.side is Side.BUY for o in open_):
            assert used(b, asset) == sells, asset


async def test_watch_orders_reports_fills_of_resting_orders_and_ends_on_close() -> None:
    venue, clock = make(seed=21)
    seen: list[Order] = []

    async def consume() -> None:
        async for o in venue.watch_orders():
            seen.append(o)

    task = asyncio.create_task(consume())
    try:
        await asyncio.sleep(0)  # let the watcher subscribe
        book = await venue.fetch_order_book(BTC)
        o = await venue.create_order(req(BTC, Side.BUY, OrderType.LIMIT, "0.01", book.bids[0].price - Decimal("10")))
        await until_print(venue, clock, BTC, lambda p: p <= o.price, o)
        await asyncio.sleep(0)
        assert [(x.id, x.status) for x in seen] == [(o.id, OrderStatus.FILLED)]
        assert seen[0] == await venue.fetch_order(o.id, BTC)
        await venue.close()
        async with asyncio.timeout(5):
            await task
    finally:
        task.cancel()
