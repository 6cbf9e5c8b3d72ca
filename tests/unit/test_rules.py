"""Order rules: every check and every message, with the exact numbers a user sees."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from app.domain import Balance, Market, OrderRequest, OrderType, Side, TimeInForce
from app.trading.rules import (
    FIELDS,
    NumberError,
    NumberStyle,
    OrderCheck,
    Problem,
    check_order,
    parse_number,
    round_amount,
    round_price,
)

BTC = Market(
    symbol="BTC/USDT",
    base="BTC",
    quote="USDT",
    price_tick=D("0.01"),
    amount_step=D("0.00001"),
    min_amount=D("0.0001"),
    max_amount=D("9000"),
    min_price=D("0.01"),
    max_price=D("1000000"),
    min_notional=D("5"),
    maker_fee=D("0.001"),
    taker_fee=D("0.002"),
)
EN = NumberStyle()
DE = NumberStyle.for_locale("de_DE")
FR = NumberStyle.for_locale("fr_FR")
CID = "T-1_abc"


def limit(**kw) -> OrderCheck:
    args = dict(side=Side.BUY, type=OrderType.LIMIT, amount="0.5", price="35000", client_order_id=CID)
    args.update(kw)
    return check_order(BTC, **args)


def market_order(**kw) -> OrderCheck:
    args = dict(side=Side.BUY, type=OrderType.MARKET, amount="0.5", reference_price=D("35000"), client_order_id=CID)
    args.update(kw)
    return check_order(BTC, **args)


def only(check: OrderCheck) -> Problem:
    assert check.request is None
    assert len(check.problems) == 1, check.problems
    return check.problems[0]


# -- parse_number -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.5", "0.5"),
        (".5", "0.5"),
        ("5.", "5"),
        ("  42 ", "42"),
        ("007", "7"),
        ("1,234.5", "1234.5"),
        ("1,234,567.891", "1234567.891"),
        ("999,999", "999999"),
        ("+3", "3"),
        ("-2.5", "-2.5"),  # negatives are returned; refusing them is the caller's rule
        ("\u22122", "-2"),  # the typographic minus sign
        ("0", "0"),
        ("0.000000000000000001", "1E-18"),  # 18 decimals: the most accepted
        ("999999999999999999", "999999999999999999"),  # 18 digits
    ],
)
def test_parse_number_accepts(text: str, value: str) -> None:
    assert parse_number(text) == D(value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Enter an amount."),
        ("   ", "Enter an amount."),
        ("abc", "'abc' is not a number: 'a' is not allowed. Use digits and '.' for the decimals, for example 0.5."),
        ("12x", "'12x' is not a number: 'x' is not allowed. Use digits and '.' for the decimals, for example 0.5."),
        ("1 000", "'1 000' is not a number: a space is not allowed. Use digits and '.' for the decimals, for example 0.5."),
        ("NaN", "'NaN' is not a number you can trade: enter digits, for example 0.5."),
        ("-Infinity", "'-Infinity' is not a number you can trade: enter digits, for example 0.5."),
        ("inf", "'inf' is not a number you can trade: enter digits, for example 0.5."),
        ("1e-5", "Write the number in full, without an exponent (1e-5 -> 0.00001)."),
        ("2.5E3", "Write the number in full, without an exponent (2.5E3 -> 2500)."),
        ("-1E+2", "Write the number in full, without an exponent (-1E+2 -> -100)."),
        ("1e-99", "Write the number in full, without an exponent (1e-5 -> 0.00001)."),
        ("1.2.3", "'1.2.3' has more than one decimal point: use '.' once, before the decimals."),
        ("1,23.4", "'1,23.4' has ',' in the wrong place: it separates thousands, as in 1,234.5; the decimal point is '.'."),
        ("1,2345", "'1,2345' has ',' in the wrong place: it separates thousands, as in 1,234.5; the decimal point is '.'."),
        ("1234,567", "'1234,567' has ',' in the wrong place: it separates thousands, as in 1,234.5; the decimal point is '.'."),
        ("0,5", "'0,5' has ',' in the wrong place: it separates thousands, as in 1,234.5; the decimal point is '.'."),
        ("0,500", "'0,500' has ',' in the wrong place: it separates thousands, as in 1,234.5; the decimal point is '.'."),
        (",123", "',123' has ',' in the wrong place: it separates thousands, as in 1,234.5; the decimal point is '.'."),
        ("1,", "'1,' has ',' in the wrong place: it separates thousands, as in 1,234.5; the decimal point is '.'."),
        ("1.234,5", "'1.234,5' has ',' in the wrong place: it separates thousands, as in 1,234.5; the decimal point is '.'."),
        ("-", "'-' is not a number: enter digits, for example 0.5."),
        (".", "'.' is not a number: enter digits, for example 0.5."),
        ("0.0000000000000000001", "'0.0000000000000000001' has 19 decimals: use at most 18."),
        ("1000000000000000000", "'1000000000000000000' is too large: use at most 18 digits before the decimal point."),
        ("x" * 40, "'xxxxxxxxxxxxxxxxxxxxx\u2026' is not a number: 'x' is not allowed. Use digits and '.' for the decimals, "
                   "for example 0.5."),
    ],
)
def test_parse_number_refuses_with_a_sentence(text: str, message: str) -> None:
    with pytest.raises(NumberError) as info:
        parse_number(text)
    assert info.value.message == message
    assert str(info.value) == message


def test_parse_number_names_the_field_when_empty() -> None:
    with pytest.raises(NumberError, match=r"^Enter a price\.$"):
        parse_number("", what="a price")


def test_parse_number_refuses_a_float_as_a_programming_error() -> None:
    with pytest.raises(TypeError):
        parse_number(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("style", "text", "value"),
    [
        (DE, "1.234,5", "1234.5"),
        (DE, "0,5", "0.5"),
        (DE, "1.234.567", "1234567"),
        (DE, "1234,567", "1234.567"),
        (FR, "1\u202f234,5", "1234.5"),  # narrow no-break space, as CLDR writes French
        (FR, "1\u00a0234,5", "1234.5"),  # no-break space
        (FR, "1 234 567,25", "1234567.25"),  # plain space, as people type
        (NumberStyle.for_locale("de_CH"), "1\u2019234.5", "1234.5"),
        (NumberStyle.for_locale("de_CH"), "1'234.5", "1234.5"),
    ],
)
def test_parse_number_per_locale(style: NumberStyle, text: str, value: str) -> None:
    assert parse_number(text, style) == D(value)


@pytest.mark.parametrize(
    ("style", "text", "message"),
    [
        (DE, "1.23", "'1.23' has '.' in the wrong place: it separates thousands, as in 1.234,5; the decimal comma is ','."),
        (DE, "0.5", "'0.5' has '.' in the wrong place: it separates thousands, as in 1.234,5; the decimal comma is ','."),
        (DE, "1,2,3", "'1,2,3' has more than one decimal comma: use ',' once, before the decimals."),
        (DE, "1e-5", "Write the number in full, without an exponent (1e-5 -> 0,00001)."),
        (DE, "", "Enter an amount."),
        (FR, "1.5", "'1.5' is not a number: '.' is not allowed. Use digits and ',' for the decimals, for example 0,5."),
        (FR, "12 34,5", "'12 34,5' has a space in the wrong place: it separates thousands, as in 1\u202f234,5; "
                        "the decimal comma is ','."),
        (FR, "1,5 0", "'1,5 0' has a space in the wrong place: it separates thousands, as in 1\u202f234,5; "
                      "the decimal comma is ','."),
    ],
)
def test_parse_number_per_locale_refuses(style: NumberStyle, text: str, message: str) -> None:
    with pytest.raises(NumberError) as info:
        parse_number(text, style)
    assert info.value.message == message


@pytest.mark.parametrize(
    ("name", "point", "group"),
    [
        ("en_US", ".", ","),
        ("de_DE", ",", "."),
        ("de-DE", ",", "."),
        ("fr_FR", ",", "\u202f"),
        ("fr_FR.UTF-8", ",", "\u202f"),
        ("fr_CA", ",", "\u202f"),  # not listed: its language's style
        ("ru_RU", ",", "\u00a0"),
        ("xx_YY", ".", ","),  # unknown: English, and the messages say which decimal point is expected
    ],
)
def test_number_style_for_locale(name: str, point: str, group: str) -> None:
    style = NumberStyle.for_locale(name)
    assert (style.decimal_point, style.group_separator) == (point, group)


def test_french_style_reads_every_kind_of_space_as_a_group_separator() -> None:
    assert FR.groups == frozenset({"\u202f", "\u00a0", " "})


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(decimal_point=",", group_separator=","),
        dict(decimal_point="", group_separator=","),
        dict(decimal_point="1", group_separator=","),
        dict(decimal_point=".", group_separator="-"),
        dict(decimal_point=".", group_separator=",", group_aliases=(".",)),
        dict(decimal_point="e", group_separator=","),
    ],
)
def test_number_style_refuses_an_impossible_style(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        NumberStyle(**kwargs)


def test_number_style_formats_without_exponent_or_trailing_zeros() -> None:
    assert DE.format(D("1E-5")) == "0,00001"
    assert EN.format(D("5E+3")) == "5000"
    assert EN.format(D("4.200")) == "4.2"
    assert EN.format(D("-0")) == "0"


# -- rounding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [
        ("0.123456", "0.12345"),
        ("0.123459999", "0.12345"),  # truncated, never rounded up
        ("0.12345", "0.12345"),
        ("0.000009", "0"),
        ("5", "5"),
    ],
)
def test_round_amount_truncates_to_the_step(amount: str, rounded: str) -> None:
    result = round_amount(BTC, D(amount))
    assert result == D(rounded)
    assert "E" not in str(result)


def test_round_amount_with_steps_that_are_not_powers_of_ten() -> None:
    half = Market("X/Y", "X", "Y", D("0.05"), D("0.5"))
    ten = Market("X/Y", "X", "Y", D("0.05"), D("10.00000000"))
    assert round_amount(half, D("1.99")) == D("1.5")
    assert round_amount(ten, D("129.9")) == D("120")
    assert str(round_amount(ten, D("129.9"))) == "120"  # not 1.2E+2: what is sent must read plainly


@pytest.mark.parametrize(
    ("price", "side", "rounded"),
    [
        ("100.004", None, "100"),
        ("100.006", None, "100.01"),
        ("100.005", None, "100.01"),  # a tie without a side goes up
        ("100.005", Side.BUY, "100"),  # a tie goes the user's way: a buy pays less
        ("100.005", Side.SELL, "100.01"),  # ... a sell receives more
        ("100.006", Side.BUY, "100.01"),  # not a tie: nearest, even against the buyer
        ("100.004", Side.SELL, "100"),
        ("0.004", None, "0"),
    ],
)
def test_round_price_to_the_nearest_tick(price: str, side: Side | None, rounded: str) -> None:
    assert round_price(BTC, D(price), side=side) == D(rounded)


def test_round_price_with_a_tick_of_five_hundredths() -> None:
    nickel = Market("X/Y", "X", "Y", D("0.05"), D("1"))
    assert round_price(nickel, D("1.02")) == D("1")
    assert round_price(nickel, D("1.03")) == D("1.05")
    assert round_price(nickel, D("1.025"), side=Side.BUY) == D("1")
    assert round_price(nickel, D("1.025"), side=Side.SELL) == D("1.05")


@pytest.mark.parametrize("bad", [D("NaN"), D("Infinity"), D("-1"), D("1E+18")])
def test_rounding_helpers_refuse_what_check_order_never_passes(bad: D) -> None:
    with pytest.raises(ValueError):
        round_amount(BTC, bad)
    with pytest.raises(ValueError):
        round_price(BTC, bad)


def test_rounding_helpers_refuse_floats() -> None:
    with pytest.raises(TypeError):
        round_amount(BTC, 0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        round_price(BTC, 0.1)  # type: ignore[arg-type]


def test_a_market_without_tick_or_step_is_a_programming_error() -> None:
    broken = Market("X/Y", "X", "Y", D("0"), D("1"))
    with pytest.raises(ValueError):
        round_price(broken, D("1"))
    with pytest.raises(ValueError):
        check_order(broken, side=Side.BUY, type=OrderType.LIMIT, amount="1", price="1", client_order_id=CID)


# -- check_order: a good order ------------------------------------------------------------


def test_a_good_limit_buy_is_the_exact_request_to_send() -> None:
    check = limit()
    assert check.ok
    assert check.problems == ()
    assert check.notes == ()
    assert check.request == OrderRequest(
        symbol="BTC/USDT", side=Side.BUY, type=OrderType.LIMIT, amount=D("0.5"), client_order_id=CID,
        price=D("35000"), stop_price=None, time_in_force=TimeInForce.GTC, post_only=False,
    )
    assert (check.amount, check.price, check.notional) == (D("0.5"), D("35000"), D("17500"))
    assert check.fee == D("35")  # taker rate: without a reference price a limit may trade at once
    assert check.balance_after is None


def test_a_resting_limit_is_estimated_at_the_maker_rate() -> None:
    check = limit(reference_price=D("35100"))  # buy below the best ask: it rests
    assert check.fee == D("17.5")
    assert check.notes == ()


def test_a_marketable_limit_is_estimated_at_the_taker_rate_and_says_so() -> None:
    check = limit(reference_price=D("34900"))
    assert check.ok
    assert check.fee == D("35")
    assert check.notes == ("The buy limit 35000 USDT is at or above the best ask 34900 USDT: it will trade at once "
                           "(taker fee).",)
    sell = limit(side=Side.SELL, reference_price=D("35000"))
    assert sell.notes == ("The sell limit 35000 USDT is at or below the best bid 35000 USDT: it will trade at once "
                          "(taker fee).",)


def test_a_market_order_uses_the_reference_price() -> None:
    check = market_order(price="1")  # a leftover price field is not part of a market order
    assert check.ok
    assert check.request is not None and check.request.price is None
    assert (check.amount, check.price, check.notional, check.fee) == (D("0.5"), D("35000"), D("17500"), D("35"))


def test_a_market_order_without_prices_says_they_are_not_known_yet() -> None:
    problem = only(market_order(reference_price=None))
    assert problem == Problem("price", "Prices for BTC/USDT are not known yet: wait for the order book to load, "
                                       "then place the market order.")


@pytest.mark.parametrize("glitch", [D("NaN"), D("0"), D("-1"), D("Infinity")])
def test_a_broken_reference_price_counts_as_unknown(glitch: D) -> None:
    assert only(market_order(reference_price=glitch)).field == "price"


def test_decimal_inputs_are_accepted_as_they_are() -> None:
    check = limit(amount=D("0.5"), price=D("35000"))
    assert check.request is not None and check.request.amount == D("0.5")


def test_stop_price_is_dropped_from_orders_that_take_none() -> None:
    check = limit(stop_price="1")
    assert check.request is not None and check.request.stop_price is None


def test_floats_are_a_programming_error() -> None:
    with pytest.raises(TypeError):
        limit(amount=0.5)
    with pytest.raises(TypeError):
        limit(price=35000.0)
    with pytest.raises(TypeError):
        market_order(reference_price=35000.0)


# -- check_order: rounding notes -------------------------------------------------------------


def test_amount_truncation_is_explained() -> None:
    check = limit(amount="0.123456")
    assert check.notes == ("Amount truncated to the step 0.00001: 0.123456 -> 0.12345 BTC.",)
    assert check.request is not None and check.request.amount == D("0.12345")


def test_price_rounding_is_explained() -> None:
    sell = limit(side=Side.SELL, price="100.005", amount="1")
    assert sell.notes == ("Price rounded to the tick 0.01: 100.005 -> 100.01 USDT.",)
    buy_tie = limit(price="100.005", amount="1")
    assert buy_tie.notes == ("Price rounded to the tick 0.01: 100.005 -> 100 USDT.",)


def test_rounding_against_the_user_says_by_how_much() -> None:
    buy = limit(price="100.006", amount="1")
    assert buy.notes == ("Price rounded to the tick 0.01: 100.006 -> 100.01 USDT, 0.004 above the price you typed.",)
    sell = limit(side=Side.SELL, price="100.004", amount="1")
    assert sell.notes == ("Price rounded to the tick 0.01: 100.004 -> 100 USDT, 0.004 below the price you typed.",)


def test_notes_follow_the_users_number_style() -> None:
    check = limit(amount="0,123456", price="35.000,006", style=DE)
    assert check.notes == (
        "Price rounded to the tick 0,01: 35000,006 -> 35000,01 USDT, 0,004 above the price you typed.",
        "Amount truncated to the step 0,00001: 0,123456 -> 0,12345 BTC.",
    )


def test_amount_in_quote_is_converted_and_never_exceeds_what_was_typed() -> None:
    check = market_order(amount="100", amount_in_quote=True)
    assert check.notes == ("Amount 100 USDT at 35000 USDT converted to 0.00285 BTC (truncated to the step 0.00001 BTC).",)
    assert check.amount == D("0.00285")
    assert check.notional == D("99.75")
    exact = limit(amount="17500", amount_in_quote=True)  # 0.5 BTC at the limit price 35000 exactly
    assert exact.amount == D("0.5") and exact.notional == D("17500")


def test_amount_in_quote_below_one_step() -> None:
    problem = only(market_order(amount="0.3", amount_in_quote=True))
    assert problem == Problem("amount", "Amount 0.3 USDT at 35000 USDT is less than one step of 0.00001 BTC: "
                                        "enter at least 3.5 USDT.")


def test_amount_in_quote_for_a_market_order_without_prices() -> None:
    check = market_order(amount="100", amount_in_quote=True, reference_price=None)
    assert [p.field for p in check.problems] == ["price"]
    assert check.amount is None


# -- check_order: amounts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("", "Enter an amount."),
        (None, "Enter an amount."),
        ("0", "Enter an amount greater than zero."),
        ("0.000", "Enter an amount greater than zero."),
        ("-1", "Amount cannot be negative: enter an amount greater than zero."),
        ("1e-5", "Write the number in full, without an exponent (1e-5 -> 0.00001)."),
        ("0,5", "'0,5' has ',' in the wrong place: it separates thousands, as in 1,234.5; the decimal point is '.'."),
        ("lots", "'lots' is not a number: 'l' is not allowed. Use digits and '.' for the decimals, for example 0.5."),
        (D("NaN"), "Amount is not a number: enter digits, for example 0.5."),
        (D("-Infinity"), "Amount is not a number: enter digits, for example 0.5."),
        (D("1E+18"), "Amount 1000000000000000000 is too large: use at most 18 digits before the decimal point."),
        ("0.000009", "Amount 0.000009 BTC is smaller than one step of 0.00001 BTC: enter at least 0.0001 BTC."),
        ("0.00009", "Amount 0.00009 BTC is below the minimum of 0.0001 BTC: increase the amount."),
        ("9000.00001", "Amount 9000.00001 BTC is above the maximum of 9000 BTC for one order: "
                       "split it into smaller orders."),
    ],
)
def test_amount_problems(amount: object, message: str) -> None:
    assert only(limit(amount=amount, price="100000")) == Problem("amount", message)


def test_smaller_than_one_step_names_the_step_when_there_is_no_higher_minimum() -> None:
    loose = Market("X/USDT", "X", "USDT", D("0.01"), D("0.001"))
    check = check_order(loose, side=Side.SELL, type=OrderType.LIMIT, amount="0.0004", price="1", client_order_id=CID)
    assert only(check) == Problem("amount", "Amount 0.0004 X is smaller than one step of 0.001 X: enter at least 0.001 X.")


def test_a_zero_maximum_means_no_maximum() -> None:
    open_ended = Market("X/USDT", "X", "USDT", D("0.01"), D("1"), max_amount=D("0"), max_price=D("0"))
    check = check_order(open_ended, side=Side.BUY, type=OrderType.LIMIT, amount="1000000", price="999999",
                        client_order_id=CID)
    assert check.ok


# -- check_order: prices --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "message"),
    [
        (None, "Enter a price."),
        ("", "Enter a price."),
        ("0", "Enter a price greater than zero."),
        ("-5", "Price cannot be negative: enter a price greater than zero."),
        ("0.004", "Price 0.004 USDT rounds to 0 at the tick 0.01 USDT: enter at least 0.01 USDT."),
        ("1000000.01", "Price 1000000.01 USDT is above the maximum of 1000000 USDT: lower the price."),
        ("3..5", "'3..5' has more than one decimal point: use '.' once, before the decimals."),
    ],
)
def test_price_problems(price: object, message: str) -> None:
    check = limit(price=price, amount="1")
    assert check.problems[0] == Problem("price", message)
    assert check.request is None


def test_price_below_the_minimum() -> None:
    floor = Market("X/USDT", "X", "USDT", D("0.01"), D("1"), min_price=D("0.10"))
    check = check_order(floor, side=Side.BUY, type=OrderType.LIMIT, amount="100", price="0.09", client_order_id=CID)
    assert only(check) == Problem("price", "Price 0.09 USDT is below the minimum of 0.1 USDT: raise the price.")


# -- check_order: order value ------------------------------------------------------------------


def test_min_notional_names_the_venue_the_value_and_what_to_type() -> None:
    check = limit(amount="0.00012", price="35000", venue_title="Binance")
    assert only(check) == Problem(
        "total", "Order value 4.20 USDT is below Binance's minimum of 5 USDT: increase the amount to at least 0.00015 BTC.",
    )
    assert check.notional == D("4.2")


def test_min_notional_without_a_venue_title_and_for_an_amount_in_quote() -> None:
    check = market_order(amount="4.2", amount_in_quote=True)
    assert only(check) == Problem(
        "total", "Order value 4.20 USDT is below the minimum of 5 USDT: increase the amount to at least 5.25 USDT.",
    )


def test_order_value_just_below_the_minimum_never_shows_the_minimum() -> None:
    check = limit(amount="0.0001", price="49999.99")  # 4.999999 USDT
    assert only(check).message.startswith("Order value 4.99 USDT is below the minimum of 5 USDT")


def test_order_value_at_the_minimum_is_accepted() -> None:
    assert limit(amount="0.0001", price="50000").ok


def test_min_notional_in_a_btc_quoted_market_shows_its_decimals() -> None:
    eth_btc = Market("ETH/BTC", "ETH", "BTC", D("0.000001"), D("0.0001"), min_amount=D("0.0001"),
                     min_notional=D("0.0001"))
    check = check_order(eth_btc, side=Side.SELL, type=OrderType.LIMIT, amount="0.0011", price="0.071234",
                        client_order_id=CID, venue_title="Binance")
    assert only(check) == Problem(
        "total", "Order value 0.000078 BTC is below Binance's minimum of 0.0001 BTC: increase the amount to at least "
                 "0.0015 ETH.",
    )


# -- check_order: balances ---------------------------------------------------------------------


def test_a_buy_needs_value_and_taker_fee_in_free_quote() -> None:
    balances = {"USDT": Balance("USDT", D("17534.99"), used=D("1000")), "BTC": Balance("BTC", D("0"))}
    check = limit(balances=balances, reference_price=D("35100"))
    assert only(check) == Problem(
        "balance", "Not enough USDT: buying 0.5 BTC needs 17535 USDT (value 17500 + fee 35), but only 17534.99 USDT "
                   "is free. Reduce the amount, or add USDT or cancel orders that hold it.",
    )
    assert check.fee == D("17.5")  # the estimate is the maker rate; the reserve is the taker rate
    assert check.balance_after == {"USDT": D("-0.01")}
    enough = limit(balances={"USDT": Balance("USDT", D("17535"))}, reference_price=D("35100"))
    assert enough.ok
    assert enough.balance_after == {"USDT": D("0")}


def test_a_post_only_buy_reserves_the_maker_fee() -> None:
    check = limit(balances={"USDT": Balance("USDT", D("17517.5"))}, post_only=True)
    assert check.ok
    assert check.fee == D("17.5")
    assert check.balance_after == {"USDT": D("0")}


def test_a_sell_needs_the_amount_in_free_base() -> None:
    check = limit(side=Side.SELL, balances={"BTC": Balance("BTC", D("0.3"), used=D("5"))})
    assert only(check) == Problem(
        "balance", "Not enough BTC: selling needs 0.5 BTC, but only 0.3 BTC is free. Reduce the amount, or add BTC "
                   "or cancel orders that hold it.",
    )
    ok = limit(side=Side.SELL, balances={"BTC": Balance("BTC", D("0.7"))})
    assert ok.ok and ok.balance_after == {"BTC": D("0.2")}


def test_an_asset_missing_from_the_balances_is_zero() -> None:
    problem = only(market_order(balances={}))
    assert problem.field == "balance"
    assert "but only 0 USDT is free" in problem.message


def test_a_market_buy_is_checked_at_the_reference_price() -> None:
    assert market_order(balances={"USDT": Balance("USDT", D("17535"))}).ok
    assert only(market_order(balances={"USDT": Balance("USDT", D("17535"))}, reference_price=D("35000.01"))).field \
        == "balance"


# -- check_order: the shape of the order ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(type=OrderType.MARKET, post_only=True, reference_price=D("35000")),
         "Post-only applies to limit orders only: turn it off, or choose a limit order."),
        (dict(post_only=True, time_in_force=TimeInForce.IOC),
         "A post-only order rests on the book, so it cannot be IOC: choose GTC or turn post-only off."),
        (dict(type=OrderType.MARKET, time_in_force=TimeInForce.FOK, reference_price=D("35000")),
         "Market orders take what the book offers; FOK applies to limit orders only: choose a limit order."),
        (dict(type=OrderType.STOP_LIMIT, stop_price="34000", time_in_force=TimeInForce.IOC),
         "A stop-limit order waits for its stop price, so it must be good-till-cancelled (GTC), not IOC."),
        (dict(client_order_id=""),
         "The order has no client order id; it is needed to find the order again if the connection drops. Try again."),
        (dict(client_order_id="a b"),
         "Client order id 'a b' may use only letters A-Z, digits, '-' and '_', at most 36 characters."),
        (dict(client_order_id="x" * 37),
         "Client order id 'xxxxxxxxxxxxxxxxxxxxx\u2026' may use only letters A-Z, digits, '-' and '_', at most 36 "
         "characters."),
        (dict(client_order_id="ordre-é"),
         "Client order id 'ordre-é' may use only letters A-Z, digits, '-' and '_', at most 36 characters."),
    ],
)
def test_order_shape_problems(kwargs: dict, message: str) -> None:
    assert only(limit(**kwargs)) == Problem("order", message)


def test_ioc_and_fok_limits_are_fine() -> None:
    assert limit(time_in_force=TimeInForce.IOC).ok
    assert limit(time_in_force=TimeInForce.FOK).request.time_in_force is TimeInForce.FOK  # type: ignore[union-attr]


def test_a_client_order_id_of_36_safe_characters_is_accepted() -> None:
    assert limit(client_order_id="Az09-_" * 6).ok


def test_a_venue_with_shorter_client_order_ids_says_its_limit() -> None:
    assert limit(client_order_id="x" * 28, max_client_id_length=28).ok  # Gate.io: "t-" + at most 28
    assert only(limit(client_order_id="x" * 29, max_client_id_length=28)).message.endswith("at most 28 characters.")


def test_an_inactive_market_refuses_orders() -> None:
    halted = Market("LUNA/USDT", "LUNA", "USDT", D("0.01"), D("1"), active=False)
    check = check_order(halted, side=Side.BUY, type=OrderType.LIMIT, amount="1", price="1", client_order_id=CID)
    assert only(check) == Problem("order", "LUNA/USDT is not open for trading right now: choose another market or try later.")


def test_post_only_that_would_cross_is_refused() -> None:
    buy = limit(post_only=True, reference_price=D("34999.99"))
    assert only(buy) == Problem("price", "A post-only buy at 35000 USDT would trade at once against the best ask "
                                         "34999.99 USDT: set the price below 34999.99 or turn post-only off.")
    sell = limit(side=Side.SELL, post_only=True, reference_price=D("35000"))
    assert only(sell) == Problem("price", "A post-only sell at 35000 USDT would trade at once against the best bid "
                                          "35000 USDT: set the price above 35000 or turn post-only off.")
    assert limit(post_only=True, reference_price=D("35000.01")).ok


# -- check_order: stop-limit ------------------------------------------------------------------------


def test_a_good_stop_limit() -> None:
    check = limit(type=OrderType.STOP_LIMIT, side=Side.SELL, price="33000", stop_price="33100.004",
                  reference_price=D("34000"))
    assert check.ok
    assert check.request is not None
    assert (check.request.price, check.request.stop_price) == (D("33000"), D("33100"))
    assert check.notes == ("Stop price rounded to the tick 0.01: 33100.004 -> 33100 USDT.",)
    assert check.fee == D("33")  # taker: a stop fires into a moving market


def test_a_stop_limit_needs_a_stop_price() -> None:
    assert only(limit(type=OrderType.STOP_LIMIT)) == Problem("stop_price", "Enter a stop price.")
    assert only(limit(type=OrderType.STOP_LIMIT, stop_price="abc")).field == "stop_price"


def test_a_stop_the_market_already_reached_is_refused() -> None:
    buy = limit(type=OrderType.STOP_LIMIT, stop_price="34000", price="36000", reference_price=D("35000"))
    assert only(buy) == Problem("stop_price", "The stop price 34000 USDT is already reached: the best ask is 35000 USDT. "
                                              "Set the stop above 35000, or use a limit order to trade now.")
    sell = limit(type=OrderType.STOP_LIMIT, side=Side.SELL, stop_price="35000", price="34000",
                 reference_price=D("35000"))
    assert only(sell).message.startswith("The stop price 35000 USDT is already reached: the best bid is 35000 USDT. "
                                         "Set the stop below 35000")


# -- check_order: everything at once ---------------------------------------------------------------


def test_every_problem_is_reported_at_once_and_nothing_is_sent() -> None:
    check = check_order(
        BTC, side=Side.BUY, type=OrderType.STOP_LIMIT, amount="", price="1,2", stop_price="-1",
        client_order_id="bad id", time_in_force=TimeInForce.FOK,
    )
    assert check.request is None
    assert [p.field for p in check.problems] == ["order", "order", "price", "stop_price", "amount"]
    assert check.messages("amount") == ("Enter an amount.",)
    assert check.messages("total") == ()
    assert not check.ok


def test_problem_fields_are_the_forms_fields() -> None:
    assert FIELDS == {"amount", "price", "stop_price", "stop_limit_price", "total", "balance", "order"}
    with pytest.raises(ValueError):
        Problem("amout", "typo")


def test_a_german_user_sees_german_numbers_in_problems() -> None:
    check = limit(amount="0,00012", price="35.000", style=DE, venue_title="Binance")
    assert only(check).message == ("Order value 4,20 USDT is below Binance's minimum of 5 USDT: increase the amount "
                                   "to at least 0,00015 BTC.")


def test_a_french_user_can_type_grouped_amounts() -> None:
    check = limit(amount="1,5", price="35\u202f000,25", style=FR)
    assert check.request is not None
    assert (check.request.amount, check.request.price) == (D("1.5"), D("35000.25"))
