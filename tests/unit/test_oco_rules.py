"""OCO rules (`app.trading.rules.check_oco`): Binance's price relations around the last traded price, each
leg's price against the market's tick and limits, one amount for both legs, the minimum order value on
the cheaper leg, and the balance the list reserves. Concrete cases give the exact sentences; properties
run over the real rules of every recorded Binance and Gate.io spot market (../shared/fixtures), with the
expected outcome worked out independently in Fractions.
"""

from __future__ import annotations

from decimal import Decimal as D
from fractions import Fraction
from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain import Balance, Market, Side
from app.trading.rules import FIELDS, NumberStyle, OcoCheck, check_oco
from tests.unit.test_rules_properties import PROPS, active_markets, binance_markets, decimal_of, fr

BTC = Market(symbol="BTC/USDT", base="BTC", quote="USDT", price_tick=D("0.01"), amount_step=D("0.00001"),
             min_amount=D("0.0001"), max_amount=D("9000"), min_price=D("0.01"), max_price=D("1000000"),
             min_notional=D("5"), maker_fee=D("0.001"), taker_fee=D("0.002"))
LAST = D("35000")
IDS = dict(list_client_id="mtL", limit_client_id="mtA", stop_client_id="mtB")


def sell(**kw: Any) -> OcoCheck:
    args: dict[str, Any] = dict(side=Side.SELL, amount="0.5", price="36000", stop_price="34000",
                                stop_limit_price="33900", last_price=LAST, **IDS)
    args.update(kw)
    return check_oco(BTC, **args)


def buy(**kw: Any) -> OcoCheck:
    args: dict[str, Any] = dict(side=Side.BUY, amount="0.5", price="34000", stop_price="36000",
                                stop_limit_price="36100", last_price=LAST, **IDS)
    args.update(kw)
    return check_oco(BTC, **args)


def fields(check: OcoCheck) -> set[str]:
    return {p.field for p in check.problems}


# -- the request ------------------------------------------------------------------------------------


def test_a_good_sell_oco_is_the_exact_list_to_send() -> None:
    check = sell(balances={"BTC": Balance("BTC", D("1"))})
    assert check.ok and check.problems == ()
    r = check.request
    assert r is not None
    assert (r.symbol, r.side, r.amount, r.price, r.stop_price, r.stop_limit_price) == (
        "BTC/USDT", Side.SELL, D("0.5"), D("36000"), D("34000"), D("33900"))
    assert (r.list_client_id, r.limit_client_id, r.stop_client_id) == ("mtL", "mtA", "mtB")
    limit, stop = r.legs()
    assert limit.post_only and limit.price == D("36000") and stop.stop_price == D("34000")
    assert check.notional == D("18000")  # the dearer leg
    assert check.fee == D("33.9")  # the stop leg at the taker rate (16950 * 0.002) beats the maker leg (18)
    assert check.balance_after == {"BTC": D("0.5")}


def test_a_good_buy_oco_reserves_the_dearer_leg_and_its_taker_fee() -> None:
    check = buy(balances={"USDT": Balance("USDT", D("18086.10"))})
    assert check.ok, check.problems
    assert check.notional == D("18050") and check.balance_after == {"USDT": D("0")}
    short = buy(balances={"USDT": Balance("USDT", D("18086.09"))})
    assert fields(short) == {"balance"}
    assert "buying 0.5 BTC needs 18086.1 USDT (value 18050 + fee 36.1)" in short.messages("balance")[0]


def test_prices_and_amount_are_rounded_as_for_one_order_and_every_rounding_is_noted() -> None:
    check = sell(amount="0.123456", price="36000.004", stop_price="33999.995", stop_limit_price="33900.005")
    assert check.ok
    r = check.request
    assert r is not None and (r.amount, r.price, r.stop_price, r.stop_limit_price) == (
        D("0.12345"), D("36000"), D("34000"), D("33900.01"))
    text = " ".join(check.notes)
    assert "Amount truncated" in text and "Limit price rounded" in text and "Stop price rounded" in text
    assert "Stop-limit price rounded" in text


# -- Binance's price relations ------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "field", "words"), [
    (dict(price="35000"), "price", "A sell OCO's limit price must be above the last price 35000 USDT: 35000 is not."),
    (dict(price="34999.99"), "price", "must be above the last price 35000 USDT"),
    (dict(stop_price="35000"), "stop_price", "A sell OCO's stop price must be below the last price 35000 USDT"),
    (dict(stop_price="36500"), "stop_price", "Set it below 35000."),
])
def test_a_sell_oco_must_straddle_the_last_price(kw: dict, field: str, words: str) -> None:
    check = sell(**kw)
    assert not check.ok and fields(check) == {field}
    assert words in check.messages(field)[0]


@pytest.mark.parametrize(("kw", "field", "words"), [
    (dict(price="35000"), "price", "A buy OCO's limit price must be below the last price 35000 USDT"),
    (dict(stop_price="35000"), "stop_price", "A buy OCO's stop price must be above the last price 35000 USDT"),
    (dict(stop_price="34000.01"), "stop_price", "Set it above 35000."),
])
def test_a_buy_oco_must_straddle_the_last_price(kw: dict, field: str, words: str) -> None:
    check = buy(**kw)
    assert not check.ok and fields(check) == {field}
    assert words in check.messages(field)[0]


def test_swapped_prices_are_refused_on_both_fields() -> None:
    check = sell(price="34000", stop_price="36000")
    assert fields(check) == {"price", "stop_price"}


def test_without_a_last_price_nothing_can_be_checked_so_nothing_is_sent() -> None:
    for last in (None, D("0"), D("NaN")):
        check = sell(last_price=last)
        assert not check.ok and fields(check) == {"order"}
        assert "last price of BTC/USDT is not known yet" in check.messages("order")[0]


def test_the_limit_leg_may_not_cross_the_book() -> None:
    check = sell(last_price=D("35000"), price="35100", reference_price=D("35100"))  # the best bid moved up
    assert fields(check) == {"price"}
    assert ("would trade at once against the best bid 35100 USDT, and an OCO's limit leg may only rest on the book"
            in check.messages("price")[0])
    assert sell(price="35100", reference_price=D("35099.99")).ok


def test_a_stop_limit_price_beyond_its_stop_is_allowed_with_a_note() -> None:
    check = sell(stop_limit_price="34100")
    assert check.ok
    assert any("above the stop price 34000 USDT" in n and "may not fill" in n for n in check.notes)
    assert any("below the stop price" in n for n in buy(stop_limit_price="35900").notes)
    assert not any("stop price" in n for n in sell().notes)


# -- each leg against the market -------------------------------------------------------------------------


def test_each_price_is_checked_against_the_markets_limits_next_to_its_field() -> None:
    check = sell(price="2000000", stop_price="0.001", stop_limit_price="abc")
    assert fields(check) == {"price", "stop_price", "stop_limit_price"}
    assert "above the maximum of 1000000 USDT" in check.messages("price")[0]
    assert "rounds to 0" in check.messages("stop_price")[0]
    assert "is not a number" in check.messages("stop_limit_price")[0]
    assert fields(sell(stop_limit_price="")) == {"stop_limit_price"}


def test_the_minimum_order_value_is_checked_on_the_cheaper_leg_and_named() -> None:
    # 0.0002 BTC: the limit leg is worth 7.20 USDT, the stop-limit leg 6.78: both above 5.
    assert sell(amount="0.0002").ok
    check = sell(amount="0.0002", price="36000", stop_price="24000", stop_limit_price="23000")  # 4.60 USDT
    assert fields(check) == {"total"}
    (message,) = check.messages("total")
    assert message.startswith("The stop-limit leg's value 4.60 USDT is below the minimum of 5 USDT")
    assert "at least 0.00022 BTC" in message
    check = buy(amount="0.0001", price="34000", stop_price="36000", stop_limit_price="36100")  # limit leg 3.40
    assert check.messages("total")[0].startswith("The limit leg's value 3.40 USDT")


def test_one_amount_for_both_legs_with_the_markets_amount_rules() -> None:
    assert "below the minimum of 0.0001 BTC" in sell(amount="0.00005").messages("amount")[0]
    assert "Enter an amount" in sell(amount="").messages("amount")[0]
    assert "above the maximum" in sell(amount="10000").messages("amount")[0]


def test_client_ids_are_checked_and_must_differ() -> None:
    assert fields(sell(list_client_id="")) == {"order"}
    assert "three different client ids" in sell(stop_client_id="mtA").messages("order")[0]
    assert "at most 28 characters" in check_oco(
        BTC, side=Side.SELL, amount="0.5", price="36000", stop_price="34000", stop_limit_price="33900",
        last_price=LAST, list_client_id="x" * 30, limit_client_id="a", stop_client_id="b",
        max_client_id_length=28).messages("order")[0]


def test_numbers_follow_the_users_style() -> None:
    de = NumberStyle.for_locale("de_DE")
    check = sell(price="36.000,5", stop_price="34.000", stop_limit_price="33.900", amount="0,5", style=de)
    assert check.ok and check.request is not None and check.request.price == D("36000.5")
    assert "35000" in sell(price="35.000", style=de).messages("price")[0]


def test_a_real_binance_market_from_the_recording() -> None:
    eth_btc = next(m for m in binance_markets() if m.symbol == "ETH/BTC")  # tick 0.000001, min value 0.0001 BTC
    args = dict(side=Side.SELL, amount="0.5", stop_limit_price="0.0659", last_price=D("0.068"), **IDS)
    check = check_oco(eth_btc, price="0.0700004", stop_price="0.066", **args)
    assert check.ok and check.request is not None and check.request.price == D("0.07")
    assert "Limit price rounded to the tick 0.000001" in check.notes[0]
    refused = check_oco(eth_btc, price="0.068", stop_price="0.066", **args)
    assert fields(refused) == {"price"}


# -- properties over every recorded market -------------------------------------------------------------


@cache
def priced_markets() -> tuple[Market, ...]:
    """Active real markets (Binance and Gate.io) where 200 ticks fit under the maximum price."""
    return tuple(m for m in active_markets() if m.max_price is None or m.max_price >= m.price_tick * 400)


@st.composite
def oco_orders(draw: st.DrawFn) -> dict[str, Any]:
    market = draw(st.sampled_from(priced_markets()))
    tick, step = fr(market.price_tick), fr(market.amount_step)
    top = 10**6 if market.max_price is None else min(10**6, int(fr(market.max_price) / tick) - 200)
    last_ticks = draw(st.integers(100, max(100, top)))
    offsets = [draw(st.integers(-60, 60)) for _ in range(3)]
    last, price, stop, stop_limit = (last_ticks * tick, *((last_ticks + o) * tick for o in offsets))
    low = min(price, stop_limit)
    smallest = max(fr(market.min_amount), fr(market.min_notional) / low, step)
    steps = int(-(-smallest // step)) + draw(st.integers(-2, 3))
    return dict(market=market, side=draw(st.sampled_from([Side.BUY, Side.SELL])), amount=max(steps, 1) * step,
                last=last, price=price, stop=stop, stop_limit=stop_limit)


def expected(o: dict[str, Any]) -> tuple[bool, set[str]]:
    """Accepted?, and the fields that must carry a problem -- from Binance's rules, in Fractions."""
    m: Market = o["market"]
    bad: set[str] = set()
    sell_side = o["side"] is Side.SELL
    if not (o["price"] > o["last"] if sell_side else o["price"] < o["last"]):
        bad.add("price")
    if not (o["stop"] < o["last"] if sell_side else o["stop"] > o["last"]):
        bad.add("stop_price")
    for name, value in (("price", o["price"]), ("stop_price", o["stop"]), ("stop_limit_price", o["stop_limit"])):
        if (m.min_price is not None and value < fr(m.min_price)) or (m.max_price is not None and value > fr(m.max_price)):
            bad.add(name)
    amount = o["amount"]
    if amount < fr(m.min_amount) or (m.max_amount is not None and amount > fr(m.max_amount)):
        bad.add("amount")
    elif amount * min(o["price"], o["stop_limit"]) < fr(m.min_notional):
        bad.add("total")
    return not bad, bad


@PROPS
@given(oco_orders())
def test_an_oco_is_accepted_exactly_when_binance_and_the_market_allow_it(o: dict[str, Any]) -> None:
    m: Market = o["market"]
    check = check_oco(m, side=o["side"], amount=decimal_of(o["amount"]), price=decimal_of(o["price"]),
                      stop_price=decimal_of(o["stop"]), stop_limit_price=decimal_of(o["stop_limit"]),
                      last_price=decimal_of(o["last"]), **IDS)
    ok, bad = expected(o)
    assert check.ok == ok, (m.symbol, check.problems)
    assert bad <= fields(check) <= bad | {"order"}, (m.symbol, check.problems)
    assert all(p.field in FIELDS and p.message.endswith(".") for p in check.problems)
    if check.ok:
        r = check.request
        assert r is not None
        for value in (r.price, r.stop_price, r.stop_limit_price):
            assert fr(value) % fr(m.price_tick) == 0
        assert fr(r.amount) % fr(m.amount_step) == 0
        if o["side"] is Side.SELL:
            assert r.price > decimal_of(o["last"]) > r.stop_price
        else:
            assert r.price < decimal_of(o["last"]) < r.stop_price
        assert min(r.price, r.stop_limit_price) * r.amount >= m.min_notional


@PROPS
@given(oco_orders(), st.integers(0, 2))
def test_an_accepted_oco_fits_the_free_balance(o: dict[str, Any], cushion: int) -> None:
    m: Market = o["market"]
    args = dict(side=o["side"], amount=decimal_of(o["amount"]), price=decimal_of(o["price"]),
                stop_price=decimal_of(o["stop"]), stop_limit_price=decimal_of(o["stop_limit"]),
                last_price=decimal_of(o["last"]), **IDS)
    if not check_oco(m, **args).ok:
        return
    amount = o["amount"]
    if o["side"] is Side.SELL:
        asset, need = m.base, amount
    else:
        value = amount * max(o["price"], o["stop_limit"])
        asset = m.quote
        need = value + Fraction(decimal_of(value) * max(m.maker_fee, m.taker_fee))
    exact = decimal_of(need) if (need * 10**30).denominator == 1 else None
    enough = check_oco(m, balances={asset: Balance(asset, D(str(float(need))) * 2 + cushion)}, **args)
    assert enough.ok
    if exact is not None and exact > D("1e-8"):
        short = check_oco(m, balances={asset: Balance(asset, exact - D("1e-8") * 10**cushion)}, **args)
        assert "balance" in fields(short)
