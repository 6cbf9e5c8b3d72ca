"""Order rules against the real rules of every Binance and Gate.io spot market.

The markets are built from recorded exchange payloads in `../shared/fixtures/`
(read in place, never copied): Binance's exchangeInfo of 2021-10-12 (1,695
symbols: PRICE_FILTER, LOT_SIZE, MIN_NOTIONAL) and Gate.io's currency pairs of
2021-04-22 (precision, amount_precision, min_base_amount, min_quote_amount).
Expected outcomes are worked out here independently, with `fractions.Fraction`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal as D
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.domain import Balance, Market, OrderType, Side, TimeInForce
from app.trading.rules import (
    FIELDS,
    NumberError,
    NumberStyle,
    OrderCheck,
    check_order,
    parse_number,
    round_amount,
    round_price,
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
BINANCE_INFO = FIXTURES / "binance" / "exchangeInfo-capture-2021-10-12.log"
GATE_PAIRS = FIXTURES / "gate" / "currency-pairs-capture-2021-04-22.log"

PROPS = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
CID = "prop-1"
STYLES = [NumberStyle.for_locale(n) for n in ("en_US", "de_DE", "fr_FR", "de_CH", "ru_RU")]


# -- loaders: recorded payloads -> Market ------------------------------------------------


def capture_responses(path: Path) -> Iterator[tuple[str, Any]]:
    """(url, parsed body) of every HTTP response in a capture log (`<url> -> <unix-s>: <payload>`)."""
    for line in path.read_text().splitlines():
        head, sep, payload = line.partition(": ")
        fields = head.split(" ")
        if sep and len(fields) == 3 and fields[1] == "->":
            yield fields[0], json.loads(payload)


def _positive_or_none(text: str) -> D | None:
    value = D(text)
    return value if value > 0 else None  # Binance writes 0 for "no limit"


def binance_market(symbol: dict[str, Any]) -> Market:
    filters = {f["filterType"]: f for f in symbol["filters"]}
    price, lot = filters["PRICE_FILTER"], filters["LOT_SIZE"]
    notional = filters.get("MIN_NOTIONAL", {}).get("minNotional", "0")
    base, quote = symbol["baseAsset"], symbol["quoteAsset"]
    return Market(
        symbol=f"{base}/{quote}",
        base=base,
        quote=quote,
        price_tick=D(price["tickSize"]),
        amount_step=D(lot["stepSize"]),
        min_amount=D(lot["minQty"]),
        max_amount=_positive_or_none(lot["maxQty"]),
        min_price=_positive_or_none(price["minPrice"]),
        max_price=_positive_or_none(price["maxPrice"]),
        min_notional=D(notional),
        active=symbol["status"] == "TRADING",
    )


def gate_market(pair: dict[str, Any]) -> Market:
    fee = D(pair["fee"]) / 100  # Gate.io publishes the fee in percent
    return Market(
        symbol=f"{pair['base']}/{pair['quote']}",
        base=pair["base"],
        quote=pair["quote"],
        price_tick=D(1).scaleb(-int(pair["precision"])),
        amount_step=D(1).scaleb(-int(pair["amount_precision"])),
        min_amount=D(pair.get("min_base_amount") or "0"),
        min_notional=D(pair.get("min_quote_amount") or "0"),
        maker_fee=fee,
        taker_fee=fee,
        active=pair["trade_status"] == "tradable",
    )


@cache
def binance_markets() -> tuple[Market, ...]:
    (body,) = [b for url, b in capture_responses(BINANCE_INFO) if url.endswith("/api/v3/exchangeInfo")]
    return tuple(binance_market(s) for s in body["symbols"])


@cache
def gate_markets() -> tuple[Market, ...]:
    (body,) = [b for url, b in capture_responses(GATE_PAIRS) if url.endswith("/spot/currency_pairs")]
    return tuple(gate_market(p) for p in body)


@cache
def active_markets() -> tuple[Market, ...]:
    return tuple(m for m in binance_markets() + gate_markets() if m.active)


@cache
def unusual_markets() -> tuple[Market, ...]:
    """The few real markets whose minimum amount is more than one step."""
    return tuple(m for m in active_markets() if m.min_amount > m.amount_step)


def test_loaders_read_every_recorded_market() -> None:
    binance, gate = binance_markets(), gate_markets()
    assert len(binance) == 1695
    assert len(gate) == 1458
    assert sum(m.active for m in binance) == 1262
    assert sum(m.active for m in gate) == 1408
    eth_btc = next(m for m in binance if m.symbol == "ETH/BTC")
    assert (eth_btc.price_tick, eth_btc.amount_step, eth_btc.min_amount, eth_btc.max_amount) == (
        D("0.000001"), D("0.0001"), D("0.0001"), D("100000"))
    assert (eth_btc.min_price, eth_btc.max_price, eth_btc.min_notional) == (D("0.000001"), D("922327"), D("0.0001"))
    eth_usdt = next(m for m in gate if m.symbol == "ETH/USDT")
    assert (eth_usdt.price_tick, eth_usdt.amount_step, eth_usdt.min_amount, eth_usdt.min_notional) == (
        D("0.01"), D("0.0001"), D("0.001"), D("1"))
    assert eth_usdt.taker_fee == D("0.002")


# -- an independent model of the rules, in Fractions ------------------------------------------------


def fr(value: D) -> Fraction:
    return Fraction(value)


def model_amount(market: Market, typed: D) -> Fraction:
    step = fr(market.amount_step)
    return math.floor(fr(typed) / step) * step


def model_price(market: Market, typed: D, side: Side | None) -> Fraction:
    tick = fr(market.price_tick)
    q = fr(typed) / tick
    n = math.floor(q)
    rest = q - n
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and side is not Side.BUY):
        n += 1
    return n * tick


def within_market(market: Market, amount: Fraction, price: Fraction) -> bool:
    return (
        amount > 0
        and amount >= fr(market.min_amount)
        and (market.max_amount is None or amount <= fr(market.max_amount))
        and price > 0
        and (market.min_price is None or price >= fr(market.min_price))
        and (market.max_price is None or price <= fr(market.max_price))
        and amount * price >= fr(market.min_notional)
    )


def smallest_order(market: Market, price: Fraction) -> Fraction:
    """The smallest amount the market accepts at `price`."""
    step = fr(market.amount_step)
    floor = max(fr(market.min_amount), fr(market.min_notional) / price, step)
    return math.ceil(floor / step) * step


def txt(value: D) -> str:
    """A Decimal as a user types it: never '1E-8'."""
    return format(value, "f")


def decimal_of(value: Fraction) -> D:
    """An exact Decimal for a Fraction whose denominator divides a power of ten."""
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
        assert digits <= 40, value
    return D(int(value * 10**digits)).scaleb(-digits)


def assert_well_formed(check: OrderCheck) -> None:
    assert (check.request is None) == bool(check.problems)
    for problem in check.problems:
        assert problem.field in FIELDS
        assert problem.message and (problem.message[0].isupper() or problem.message[0] == "'") and problem.message.endswith(".")
    for text in (p.message for p in check.problems):
        assert "Traceback" not in text and "Decimal(" not in text


def assert_accepted_request_obeys_the_market(market: Market, check: OrderCheck) -> None:
    request = check.request
    assert request is not None
    assert request.amount > 0
    assert request.amount % market.amount_step == 0
    assert request.amount >= market.min_amount
    assert market.max_amount is None or request.amount <= market.max_amount
    price = request.price if request.type is not OrderType.MARKET else check.price
    assert price is not None and price > 0
    if request.type is not OrderType.MARKET:
        assert request.price % market.price_tick == 0  # type: ignore[operator]
        assert market.min_price is None or request.price >= market.min_price  # type: ignore[operator]
        assert market.max_price is None or request.price <= market.max_price  # type: ignore[operator]
    if request.stop_price is not None:
        assert request.stop_price % market.price_tick == 0
    assert check.notional == request.amount * price
    assert check.notional >= market.min_notional
    for value in (request.amount, request.price, request.stop_price):  # never 1E+1: a positive exponent
        assert value is None or value.as_tuple().exponent <= 0  # type: ignore[operator]


# -- every real market, at its boundaries ----------------------------------------------------------


def boundary_order(market: Market) -> tuple[Fraction, Fraction]:
    """A price and the smallest amount the market accepts at it."""
    tick = fr(market.price_tick)
    price = max(tick, fr(market.min_price or market.price_tick))
    price = math.ceil(price / tick) * tick
    while True:
        amount = smallest_order(market, price)
        if market.max_amount is None or amount <= fr(market.max_amount):
            return price, amount
        price *= 10
        assert market.max_price is None or price <= fr(market.max_price), market


def boundary_prices(market: Market) -> list[Fraction]:
    """The lowest price with an order the market accepts (where the minimum order value decides the smallest
    amount), and the lowest price at which the minimum amount decides it instead."""
    low, _ = boundary_order(market)
    tick = fr(market.price_tick)
    prices = [low]
    if market.min_amount > 0 and market.min_notional > 0:
        high = max(low, math.ceil(fr(market.min_notional) / fr(market.min_amount) / tick) * tick)
        if market.max_price is None or high <= fr(market.max_price):
            prices.append(high)
    return prices


def expected_fields(market: Market, amount: Fraction, price: Fraction) -> set[str]:
    fields = set()
    if amount <= 0 or amount < fr(market.min_amount) or (market.max_amount and amount > fr(market.max_amount)):
        fields.add("amount")
    if (market.min_price and price < fr(market.min_price)) or (market.max_price and price > fr(market.max_price)):
        fields.add("price")
    if amount > 0 and price > 0 and amount * price < fr(market.min_notional):
        fields.add("total")
    return fields


def limit_check(market: Market, side: Side, amount: Fraction, price: Fraction) -> OrderCheck:
    return check_order(market, side=side, type=OrderType.LIMIT, amount=txt(decimal_of(amount)),
                       price=txt(decimal_of(price)), client_order_id=CID)


@pytest.mark.parametrize("source", ["binance", "gate"])
def test_every_real_market_accepts_its_smallest_order_and_refuses_one_step_less(source: str) -> None:
    markets = [m for m in (binance_markets() if source == "binance" else gate_markets()) if m.active]
    assert len(markets) > 1000
    step_below_min_amount = 0
    for market in markets:
        step, tick = fr(market.amount_step), fr(market.price_tick)
        side = Side.SELL if len(market.symbol) % 2 else Side.BUY
        for price in boundary_prices(market):
            amount = smallest_order(market, price)
            check = limit_check(market, side, amount, price)
            assert check.ok, (market, check.problems)
            assert check.notes == ()
            assert_accepted_request_obeys_the_market(market, check)
            assert fr(check.request.amount) == amount and fr(check.request.price) == price  # type: ignore[union-attr]
            less = amount - step
            if less > 0:
                smaller = limit_check(market, side, less, price)
                assert {p.field for p in smaller.problems} == expected_fields(market, less, price) != set(), market
                step_below_min_amount += less < fr(market.min_amount)
            if market.min_price is not None and fr(market.min_price) > tick:
                cheap = fr(market.min_price) - tick
                under = limit_check(market, side, amount, cheap)
                assert {p.field for p in under.problems} == expected_fields(market, amount, cheap), market
    if source == "gate":
        assert step_below_min_amount >= 5  # the markets whose minimum amount is several steps were reached


def test_every_inactive_real_market_refuses_orders() -> None:
    inactive = [m for m in binance_markets() + gate_markets() if not m.active]
    assert len(inactive) == 433 + 50
    for market in inactive:
        price, amount = boundary_order(market)
        check = check_order(market, side=Side.BUY, type=OrderType.LIMIT, amount=txt(decimal_of(amount)),
                            price=txt(decimal_of(price)), client_order_id=CID)
        assert [p.field for p in check.problems] == ["order"]


# -- strategies ----------------------------------------------------------------------------------------


def grouped(value: D, style: NumberStyle) -> str:
    """`value` written the way a user of `style` writes it, thousands grouped (the test's own formatter)."""
    text = format(value, ",f")
    return text.replace(",", "\x00").replace(".", style.decimal_point).replace("\x00", style.group_separator)


@st.composite
def typed_number(draw: st.DrawFn, value: Fraction, unit: Fraction, style: NumberStyle) -> tuple[D, str]:
    """`value`, or just off it (random digits up to 18 decimals, or exactly half a `unit`: a rounding tie);
    as a Decimal and as the text a user of `style` types."""
    exact = decimal_of(value)
    offset = draw(st.sampled_from(["none", "random", "half"]))
    if offset == "random":
        exact += D(draw(st.integers(1, 10**6))).scaleb(-draw(st.integers(6, 18)))
    elif offset == "half":
        exact += decimal_of(unit / 2)
    text = grouped(exact, style) if draw(st.booleans()) else format(exact, "f").replace(".", style.decimal_point)
    return exact, text


def on_grid(value: Fraction, unit: Fraction) -> Fraction:
    return max(unit, math.floor(value / unit) * unit)


@st.composite
def limit_orders(draw: st.DrawFn) -> dict[str, Any]:
    """A limit order on a real market: priced across and at the edges of the market's price range, sized around
    the smallest order it accepts and around its minimum and maximum amounts."""
    market = draw(st.sampled_from(active_markets()) | st.sampled_from(unusual_markets()))
    style = draw(st.sampled_from(STYLES))
    tick, step = fr(market.price_tick), fr(market.amount_step)
    low = max(tick, fr(market.min_price or market.price_tick))
    near = draw(st.sampled_from(["across", "min_price", "max_price"]))
    if near == "min_price":
        price = on_grid(low + tick * draw(st.integers(-2, 2)), tick)
    elif near == "max_price" and market.max_price is not None:
        price = fr(market.max_price) + tick * draw(st.integers(-2, 2))
    else:
        price = math.ceil(low / tick) * tick * draw(st.sampled_from([1, 2, 3, 7])) * 10 ** draw(st.integers(0, 12))
    price_value, price_text = draw(typed_number(price, tick, style))
    assume(price_value < 10**17)
    rounded_price = model_price(market, price_value, None)
    smallest = smallest_order(market, rounded_price) if rounded_price > 0 else step
    size = draw(st.sampled_from(["smallest", "min_amount", "max_amount"]))
    if size == "min_amount":
        amount = fr(market.min_amount) + step * draw(st.integers(-2, 2))
    elif size == "max_amount" and market.max_amount is not None:
        amount = fr(market.max_amount) + step * draw(st.integers(-2, 2))
    else:
        amount = smallest * draw(st.sampled_from([Fraction(1, 2), Fraction(9, 10), 1, 1, Fraction(11, 10), 3, 1000]))
    amount_value, amount_text = draw(typed_number(on_grid(amount, step), step, style))
    assume(amount_value < 10**17)
    return dict(market=market, style=style, side=draw(st.sampled_from(Side)), price=price_value,
                price_text=price_text, amount=amount_value, amount_text=amount_text)


@PROPS
@given(limit_orders())
def test_a_limit_order_is_accepted_exactly_when_the_market_allows_it(order: dict[str, Any]) -> None:
    market, side = order["market"], order["side"]
    check = check_order(market, side=side, type=OrderType.LIMIT, amount=order["amount_text"],
                        price=order["price_text"], client_order_id=CID, style=order["style"])
    assert_well_formed(check)
    amount = model_amount(market, order["amount"])
    price = model_price(market, order["price"], side)
    assert check.ok == within_market(market, amount, price), (check.problems, amount, price)
    if check.ok:
        assert_accepted_request_obeys_the_market(market, check)
        assert fr(check.request.amount) == amount  # type: ignore[union-attr]
        assert fr(check.request.price) == price  # type: ignore[union-attr]
        assert check.request.amount <= order["amount"]  # type: ignore[union-attr]  # never more than typed
        assert abs(fr(check.request.price) - fr(order["price"])) <= fr(market.price_tick) / 2  # type: ignore[union-attr]
    if check.amount is not None:
        assert (check.amount != order["amount"]) == any("truncated" in n for n in check.notes)
    for problem in check.problems:
        assert "E+" not in problem.message and "E-" not in problem.message


@PROPS
@given(limit_orders(), st.sampled_from([OrderType.MARKET, OrderType.LIMIT]), st.data())
def test_an_amount_in_quote_never_spends_more_than_typed(order: dict[str, Any], kind: OrderType,
                                                         data: st.DataObject) -> None:
    market, side = order["market"], order["side"]
    reference = decimal_of(model_price(market, order["price"], None))
    assume(reference > 0)
    spend = order["amount"] * reference
    assume(spend < 10**17)
    spend = spend.quantize(D(1).scaleb(-data.draw(st.integers(0, 8))))
    assume(spend > 0)
    check = check_order(market, side=side, type=kind, amount=txt(spend), price=txt(reference),
                        reference_price=reference, amount_in_quote=True, client_order_id=CID)
    assert_well_formed(check)
    if check.amount is not None:
        step = fr(market.amount_step)
        assert fr(check.amount) % step == 0
        assert fr(check.amount) * fr(reference) <= fr(spend)  # never spends more than typed
        assert (fr(check.amount) + step) * fr(reference) > fr(spend)  # ... and as much as the steps allow
    if check.ok:
        assert_accepted_request_obeys_the_market(market, check)


@PROPS
@given(limit_orders(), st.integers(0, 3), st.booleans(),
       st.sampled_from([("0.001", "0.001"), ("0.001", "0.002"), ("0", "0.00075"), ("0.002", "0.001")]), st.data())
def test_an_accepted_order_fits_the_free_balance(order: dict[str, Any], cushion: int, post_only: bool,
                                                fees: tuple[str, str], data: st.DataObject) -> None:
    market, side = replace(order["market"], maker_fee=D(fees[0]), taker_fee=D(fees[1])), order["side"]
    amount = model_amount(market, order["amount"])
    price = model_price(market, order["price"], side)
    assume(within_market(market, amount, price))
    rate = fr(market.maker_fee) if post_only else max(fr(market.maker_fee), fr(market.taker_fee))
    need = amount * price * (1 + rate) if side is Side.BUY else amount
    asset = market.quote if side is Side.BUY else market.base
    free = need + Fraction(cushion - 1, 10**8)  # a hair short, exactly enough, or more
    balances = {asset: Balance(asset, decimal_of(free))}
    resting = decimal_of(price * 2 if side is Side.BUY else price / 2)  # away from the book: the order rests
    reference = resting if post_only else data.draw(st.sampled_from([None, resting, decimal_of(price)]))
    check = check_order(market, side=side, type=OrderType.LIMIT, amount=order["amount_text"], price=order["price_text"],
                        client_order_id=CID, style=order["style"], balances=balances, post_only=post_only,
                        reference_price=reference)
    assert_well_formed(check)
    # The fee is rounded up to 1e-8: a balance short of the exact need by under 1e-8 may still be short.
    if free < need:
        assert not check.ok and [p.field for p in check.problems] == ["balance"]
    elif free >= need + Fraction(1, 10**8):
        assert check.ok, check.problems
    if check.ok:
        assert check.balance_after is not None and check.balance_after[asset] >= 0
        assert fr(check.balance_after[asset]) <= free - (amount * price if side is Side.BUY else amount)


@st.composite
def any_accepted_order(draw: st.DrawFn) -> tuple[Market, dict[str, Any], OrderCheck]:
    order = draw(limit_orders())
    market, side = order["market"], order["side"]
    kind = draw(st.sampled_from(OrderType))
    reference = decimal_of(model_price(market, order["price"], None))
    assume(reference > 0)
    kwargs: dict[str, Any] = dict(side=side, type=kind, amount=order["amount_text"], style=order["style"],
                                  client_order_id=CID)
    if kind is OrderType.MARKET:
        kwargs["reference_price"] = reference
    else:
        kwargs["price"] = order["price_text"]
    if kind is OrderType.STOP_LIMIT:
        kwargs["stop_price"] = order["price_text"]
    if kind is OrderType.LIMIT:
        kwargs["time_in_force"] = draw(st.sampled_from(TimeInForce))
        kwargs["post_only"] = kwargs["time_in_force"] is TimeInForce.GTC and draw(st.booleans())
    if draw(st.booleans()) and kind is not OrderType.STOP_LIMIT:
        kwargs["amount"] = txt(order["amount"] * reference)
        kwargs["amount_in_quote"] = True
        kwargs["price"] = txt(reference) if kind is not OrderType.MARKET else None
        kwargs["style"] = NumberStyle()
    if draw(st.booleans()):
        kwargs["balances"] = {market.quote: Balance(market.quote, D(10) ** 20),
                              market.base: Balance(market.base, D(10) ** 18)}
    check = check_order(market, **kwargs)
    assume(check.ok)
    return market, kwargs, check


@PROPS
@given(any_accepted_order())
def test_an_accepted_request_passes_the_same_check_again_unchanged(accepted: tuple[Market, dict[str, Any], OrderCheck]) -> None:
    market, kwargs, first = accepted
    request = first.request
    assert request is not None
    assert_accepted_request_obeys_the_market(market, first)
    again = check_order(
        market, side=request.side, type=request.type, amount=request.amount, price=request.price,
        stop_price=request.stop_price, reference_price=kwargs.get("reference_price"), balances=kwargs.get("balances"),
        client_order_id=request.client_order_id, time_in_force=request.time_in_force, post_only=request.post_only,
    )
    assert again.request == request
    assert (again.amount, again.price, again.notional, again.fee, again.balance_after) == (
        first.amount, first.price, first.notional, first.fee, first.balance_after)
    assert not [n for n in again.notes if "rounded" in n or "truncated" in n or "converted" in n]


# -- nothing a user types crashes the check ----------------------------------------------------------

NUMBERISH = "0123456789.,-+eE \u202f\u00a0'\u2019\u2212\u221enaNIif"


@PROPS
@given(
    market=st.sampled_from(active_markets()),
    side=st.sampled_from(Side),
    kind=st.sampled_from(OrderType),
    amount=st.one_of(st.text(), st.text(NUMBERISH, max_size=30), st.decimals()),
    price=st.one_of(st.none(), st.text(), st.text(NUMBERISH, max_size=30), st.decimals()),
    stop=st.one_of(st.none(), st.text(NUMBERISH, max_size=30), st.decimals()),
    reference=st.one_of(st.none(), st.decimals()),
    in_quote=st.booleans(),
    post_only=st.booleans(),
    tif=st.sampled_from(TimeInForce),
    client_order_id=st.text(max_size=40),
    style=st.sampled_from(STYLES),
    free=st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False)),
)
def test_random_input_never_crashes_the_check(market: Market, side: Side, kind: OrderType, amount: Any, price: Any,
                                              stop: Any, reference: D | None, in_quote: bool, post_only: bool,
                                              tif: TimeInForce, client_order_id: str, style: NumberStyle,
                                              free: D | None) -> None:
    balances = None if free is None else {market.base: Balance(market.base, free), market.quote: Balance(market.quote, free)}
    check = check_order(market, side=side, type=kind, amount=amount, price=price, stop_price=stop,
                        reference_price=reference, amount_in_quote=in_quote, balances=balances,
                        client_order_id=client_order_id, time_in_force=tif, post_only=post_only, style=style)
    assert_well_formed(check)
    if check.ok:
        assert_accepted_request_obeys_the_market(market, check)


# -- numbers and rounding ----------------------------------------------------------------------------


@PROPS
@given(st.builds(lambda n, places: D(n).scaleb(-places), st.integers(-(10**17) + 1, 10**17 - 1), st.integers(0, 18)),
       st.sampled_from(STYLES), st.booleans())
def test_a_number_written_in_a_style_reads_back_exactly(value: D, style: NumberStyle, group: bool) -> None:
    text = grouped(value, style) if group else format(value, "f").replace(".", style.decimal_point)
    assert parse_number(text, style) == value


@PROPS
@given(st.text(NUMBERISH, max_size=30), st.sampled_from(STYLES))
def test_whatever_parse_number_accepts_is_the_plain_reading_of_the_text(text: str, style: NumberStyle) -> None:
    try:
        value = parse_number(text, style)
    except NumberError as exc:
        assert exc.message.endswith(".")
        return
    plain = text.strip()
    for g in style.groups:
        plain = plain.replace(g, "")
    plain = plain.replace(style.decimal_point, ".").replace("\u2212", "-").replace(" ", "")
    assert value.is_finite()
    assert value == D(plain)


@PROPS
@given(st.sampled_from(active_markets()), st.decimals(min_value=0, max_value=D("1e12"), allow_nan=False,
                                                      allow_infinity=False), st.sampled_from([None, *Side]),
       st.integers(0, 10**9), st.booleans())
def test_rounding_stays_on_the_grid_and_within_its_bounds(market: Market, value: D, side: Side | None, ticks: int,
                                                          tie: bool) -> None:
    if tie:
        value = decimal_of((ticks + Fraction(1, 2)) * fr(market.price_tick))
    amount = round_amount(market, value)
    step = fr(market.amount_step)
    assert fr(amount) % step == 0
    assert fr(amount) <= fr(value) < fr(amount) + step
    price = round_price(market, value, side=side)
    tick = fr(market.price_tick)
    assert fr(price) % tick == 0
    assert abs(fr(price) - fr(value)) <= tick / 2
    if abs(fr(price) - fr(value)) == tick / 2:  # a tie goes the user's way
        assert (price < value) if side is Side.BUY else (price > value)


@PROPS
@given(st.integers(10, 10**15), st.data(), st.sampled_from(STYLES))
def test_a_group_separator_out_of_place_is_refused(whole: int, data: st.DataObject, style: NumberStyle) -> None:
    digits = str(whole)
    cut = data.draw(st.integers(1, len(digits) - 1).filter(lambda i: (len(digits) - i) % 3 != 0))
    decimals = data.draw(st.sampled_from(["", style.decimal_point + "5"]))
    with pytest.raises(NumberError, match="in the wrong place"):
        parse_number(digits[:cut] + style.group_separator + digits[cut:] + decimals, style)


@PROPS
@given(st.integers(0, 999), st.sampled_from(STYLES))
def test_a_leading_zero_group_is_a_decimal_separator_in_the_wrong_style(thousandths: int, style: NumberStyle) -> None:
    text = f"0{style.group_separator}{thousandths:03d}"  # '0,500' in English: someone meant 0.5
    with pytest.raises(NumberError, match="in the wrong place"):
        parse_number(text, style)
