"""Order rules: what the order form checks before anything is sent.

`check_order` validates one order against the venue's market rules and the
account's free balances and returns an `OrderCheck`: either the exact, rounded
`OrderRequest` to send, or the problems, each tied to the form field it is about
(so the form shows it next to that field as the user types). It never raises for
anything a user typed; only programming errors raise (a float where a Decimal
belongs, a market without a tick).

Decisions (others must follow them):

- Numbers are `Decimal` throughout; floats are refused (TypeError). Arithmetic
  runs in a local 100-digit context and typed numbers are bounded (at most 18
  digits before and 18 after the decimal point), so every product and sum here is
  exact. Decimal arguments from code skip the decimals bound (they are truncated
  or rounded like typed ones) but not the size bound.
- Text is parsed by `parse_number` with an explicit `NumberStyle` (no global
  locale state). Group separators are accepted only where they belong
  (`1,234.5`); exponent notation, NaN and Infinity are refused with a sentence.
- Amounts are truncated DOWN to the step: an order never buys or sells more than
  typed. An amount typed in the quote currency (`amount_in_quote`) is converted
  with the limit price, or the reference price for a market order, to the largest
  whole number of steps whose value does not exceed it: never spend more than
  asked (the fee comes on top).
- Limit and stop prices are rounded to the NEAREST tick. A tie (exactly half a
  tick) goes the user's way: a buy rounds down, a sell rounds up; a stop price
  ties up. Every rounding is written in `notes`, and a rounding against the user
  (a buy rounded up, a sell rounded down) says by how much.
- A market order needs `reference_price` (best ask for a buy, best bid for a
  sell); its value, fee and balance are estimated at that price, which a market
  order walking the book may exceed: the venue's own check stays final.
- Fee estimate (`OrderCheck.fee`, quote currency, rounded up to 1e-8): taker
  rate for market and stop-limit orders and for a limit order that would trade at
  once against `reference_price` (or whose marketability is unknown because no
  reference price was given); maker rate for a limit that rests (post-only, or
  not crossing the reference price).
- Balance: a buy needs the order value plus the fee at the taker rate in free
  quote (the maker rate for post-only, which can only rest), because a limit
  priced to rest can still cross a moving market before it arrives; a sell needs
  the amount in free base. `balance_after` holds the spent asset's free balance
  once the order is placed.
- Stop-limit orders are good-till-cancelled only: IOC or FOK would be applied at
  the trigger, where venues differ (and a user rarely means it). A stop price
  the market has already reached is refused (Binance rejects it as "would
  trigger immediately"). Market orders take no time in force and no post-only.
- A zero or missing `max_amount`/`max_price` means no limit (exchanges publish
  0 for "none").
- Client order ids: 1 to 36 of A-Z a-z 0-9 - _ : characters every supported venue
  accepts, and Binance's and MEXC's length. Gate.io allows only 28 after its "t-"
  prefix: pass `max_client_id_length=28` for it.
- OCO lists (`check_oco`): one amount (in the base currency) for both legs; the
  limit leg is maker-only and the stop leg a stop-limit, both GTC. Binance's price
  rule is checked against the LAST traded price, as Binance does: a sell needs
  limit price > last > stop price, a buy limit price < last < stop price (strict).
  The limit leg must also not cross the book (`reference_price`: best bid for a
  sell, best ask for a buy), because a maker-only order that would trade is
  refused. The stop-limit leg's own limit price is not restricted by Binance; a
  sell stop-limit priced above its stop (a buy below) only gets a note, as it may
  not fill once triggered. Each leg's price is rounded and bounded like a limit
  price; the minimum order value is checked on the lower-priced leg (if it passes,
  so does the other). A buy needs the larger leg's value plus the taker fee on it
  (the venue reserves once for the list); a sell needs the amount.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Final

from app.domain import ZERO, Balance, Market, OrderRequest, OrderType, Side, TimeInForce
from app.venues.base import OcoRequest

MAX_DECIMALS: Final = 18  # an ERC-20 token's smallest unit; anything finer is a typo
MAX_INTEGER_DIGITS: Final = 18  # below 10**18: more than any market's largest order
FEE_PRECISION: Final = Decimal("1e-8")
CLIENT_ID_MAX: Final = 36
FIELDS: Final = frozenset({"amount", "price", "stop_price", "stop_limit_price", "total", "balance", "order"})

_ARITH = Context(prec=100, traps=[InvalidOperation, DivisionByZero, Overflow])
_LIMIT = Decimal(10) ** MAX_INTEGER_DIGITS
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]+")
_DIGITS = frozenset("0123456789")
_SIGNS = {"+": "", "-": "-", "\u2212": "-"}  # U+2212 is the typographic minus some keyboards produce
_NOT_FINITE = frozenset({"nan", "snan", "qnan", "inf", "infinity", "\u221e"})
_EXPONENT = re.compile(r"(?P<mantissa>[^eE]*[0-9][^eE]*)[eE](?P<exp>[+\-\u2212]?[0-9]{1,4})")


# -- numbers ------------------------------------------------------------------------------


class NumberError(ValueError):
    """Text that is not a number the order form accepts; `message` is a sentence for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class NumberStyle:
    """How a user writes numbers: the decimal point and the thousands separator.

    `group_aliases` are characters also read as the group separator (French text
    has narrow no-break spaces, no-break spaces or plain spaces, depending on
    where it was typed or pasted from). The UI may build one straight from
    QLocale's decimalPoint() and groupSeparator().
    """

    decimal_point: str = "."
    group_separator: str = ","
    group_aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        chars = (self.decimal_point, self.group_separator, *self.group_aliases)
        if any(len(c) != 1 or c in _DIGITS or c in _SIGNS or c in "eE" for c in chars):
            raise ValueError(f"not a number style: {self!r}")
        if self.decimal_point in chars[1:]:
            raise ValueError(f"the decimal point {self.decimal_point!r} cannot also separate groups")

    @property
    def groups(self) -> frozenset[str]:
        return frozenset((self.group_separator, *self.group_aliases))

    @classmethod
    def for_locale(cls, name: str) -> NumberStyle:
        """The style for a locale name (`en_US`, `de-DE`, `fr_FR.UTF-8`, `fr`); English for one not listed."""
        key = name.split(".", 1)[0].split("@", 1)[0].replace("-", "_")
        style = _LOCALES.get(key) or _LOCALES.get(key.split("_", 1)[0].lower())
        return style or cls()

    def format(self, value: Decimal) -> str:
        """`value` as this style writes it: no exponent, no trailing zeros, no grouping."""
        return _plain_text(value).replace(".", self.decimal_point)


_SPACES = ("\u00a0", " ")
_LOCALES: dict[str, NumberStyle] = {
    "en": NumberStyle(),
    "en_US": NumberStyle(),
    "en_GB": NumberStyle(),
    "ja_JP": NumberStyle(),
    "zh_CN": NumberStyle(),
    "de": NumberStyle(",", "."),
    "de_DE": NumberStyle(",", "."),
    "es_ES": NumberStyle(",", "."),
    "it_IT": NumberStyle(",", "."),
    "nl_NL": NumberStyle(",", "."),
    "pt_BR": NumberStyle(",", "."),
    "tr_TR": NumberStyle(",", "."),
    "de_CH": NumberStyle(".", "\u2019", ("'",)),
    "fr": NumberStyle(",", "\u202f", _SPACES),
    "fr_FR": NumberStyle(",", "\u202f", _SPACES),
    "ru_RU": NumberStyle(",", "\u00a0", ("\u202f", " ")),
    "pl_PL": NumberStyle(",", "\u00a0", ("\u202f", " ")),
}


def parse_number(text: str, style: NumberStyle = NumberStyle(), *, what: str = "an amount") -> Decimal:
    """The number a user typed, as a Decimal; raises `NumberError` with a sentence saying what to fix.

    Negative numbers are returned: whether they make sense is the caller's rule.
    `what` names the field in the message for empty text ("Enter an amount.").
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_number takes text, not {type(text).__name__}")
    raw = text.strip()
    shown = _shown(raw)
    if not raw:
        raise NumberError(f"Enter {what}.")
    example = style.format(Decimal("0.5"))
    sign = _SIGNS.get(raw[0])
    body = raw[1:] if sign is not None else raw
    if not body:
        raise NumberError(f"'{shown}' is not a number: enter digits, for example {example}.")
    if body.lower() in _NOT_FINITE:
        raise NumberError(f"'{shown}' is not a number you can trade: enter digits, for example {example}.")
    groups = style.groups
    dp = style.decimal_point
    exponent = _EXPONENT.fullmatch(body)
    if exponent and all(ch in _DIGITS or ch == dp or ch in groups for ch in exponent["mantissa"]):
        raise NumberError(_exponent_message(exponent, sign == "-", shown, style))
    for ch in body:
        if ch not in _DIGITS and ch != dp and ch not in groups:
            raise NumberError(
                f"'{shown}' is not a number: {_describe(ch)} is not allowed. "
                f"Use digits and '{dp}' for the decimals, for example {example}."
            )
    if body.count(dp) > 1:
        raise NumberError(f"'{shown}' has more than one {_point_name(dp)}: use '{dp}' once, before the decimals.")
    whole, _, decimals = body.partition(dp)
    if any(g in decimals for g in groups) or not _groups_ok(whole, groups):
        wrong = next(ch for ch in body if ch in groups)
        grouped = "1" + style.group_separator + "234" + dp + "5"
        raise NumberError(
            f"'{shown}' has {_describe(wrong)} in the wrong place: it separates thousands, as in {grouped}; "
            f"the {_point_name(dp)} is '{dp}'."
        )
    digits = "".join(ch for ch in whole if ch in _DIGITS)
    if not digits and not decimals:
        raise NumberError(f"'{shown}' is not a number: enter digits, for example {example}.")
    if len(decimals) > MAX_DECIMALS:
        raise NumberError(f"'{shown}' has {len(decimals)} decimals: use at most {MAX_DECIMALS}.")
    if len(digits.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise NumberError(f"'{shown}' is too large: use at most {MAX_INTEGER_DIGITS} digits before the {_point_name(dp)}.")
    return Decimal(f"{sign or ''}{digits or '0'}.{decimals or '0'}") if decimals else Decimal(f"{sign or ''}{digits}")


def _groups_ok(whole: str, groups: frozenset[str]) -> bool:
    """`1,234,567` yes; `1,23`, `,123`, `1,` and `0,123` (a decimal comma typed in the wrong style) no."""
    if not any(g in whole for g in groups):
        return True
    for g in groups:
        whole = whole.replace(g, "\x00")
    head, *rest = whole.split("\x00")
    return 1 <= len(head) <= 3 and not head.startswith("0") and all(len(part) == 3 for part in rest)


def _exponent_message(match: re.Match[str], negative: bool, shown: str, style: NumberStyle) -> str:
    generic = "Write the number in full, without an exponent (1e-5 -> 0.00001)."
    try:
        mantissa = parse_number(match["mantissa"], style)
        exp = int(match["exp"].replace("\u2212", "-"))
    except NumberError:
        return generic
    if abs(exp) > MAX_DECIMALS or mantissa < 0:
        return generic
    with localcontext(_ARITH):
        value = mantissa.scaleb(exp)
    return f"Write the number in full, without an exponent ({shown} -> {style.format(-value if negative else value)})."


def _shown(text: str) -> str:
    return text if len(text) <= 24 else text[:21] + "\u2026"


def _describe(ch: str) -> str:
    names = {" ": "a space", "\u00a0": "a no-break space", "\u202f": "a narrow no-break space"}
    return names.get(ch, f"'{ch}'")


def _point_name(dp: str) -> str:
    return {".": "decimal point", ",": "decimal comma"}.get(dp, "decimal separator")


def _plain_text(value: Decimal) -> str:
    with localcontext(_ARITH):
        if value == 0:
            return "0"
        return format(value.normalize(), "f")


# -- rounding ------------------------------------------------------------------------------


def round_amount(market: Market, amount: Decimal) -> Decimal:
    """`amount` truncated down to a whole number of `market.amount_step` (never more than asked)."""
    _require_rules(market)
    amount = _require_amount(amount)
    with localcontext(_ARITH):
        return _plain((amount // market.amount_step) * market.amount_step)


def round_price(market: Market, price: Decimal, *, side: Side | None = None) -> Decimal:
    """`price` rounded to the nearest `market.price_tick`.

    An exact tie goes the user's way: down for a buy, up for a sell; up without a side.
    """
    _require_rules(market)
    price = _require_amount(price)
    tick = market.price_tick
    with localcontext(_ARITH):
        steps, rest = divmod(price, tick)
        twice = rest * 2
        if twice > tick or (twice == tick and side is not Side.BUY):
            steps += 1
        return _plain(steps * tick)


def _require_rules(market: Market) -> None:
    if not (market.price_tick.is_finite() and market.price_tick > 0 and market.amount_step.is_finite() and market.amount_step > 0):
        raise ValueError(f"{market.symbol} has no usable tick or step: {market.price_tick}, {market.amount_step}")


def _require_amount(value: Decimal) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"expected a Decimal, got {type(value).__name__}")
    if not value.is_finite() or value < 0 or value >= _LIMIT:
        raise ValueError(f"not a finite non-negative number below 10**{MAX_INTEGER_DIGITS}: {value}")
    return value


def _plain(value: Decimal) -> Decimal:
    """Same value, no trailing zeros and never a positive exponent (so str() shows no 'E')."""
    value = value.normalize()
    if value.as_tuple().exponent > 0:  # type: ignore[operator]
        value = value.quantize(Decimal(1))
    return value


def _ceil_to(value: Decimal, unit: Decimal) -> Decimal:
    return value.quantize(unit, rounding=ROUND_CEILING) if value % unit else value


# -- the check -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One reason the order cannot be sent, shown next to `field` in the order form."""

    field: str  # one of FIELDS
    message: str

    def __post_init__(self) -> None:
        if self.field not in FIELDS:
            raise ValueError(f"unknown order form field {self.field!r}; use one of {sorted(FIELDS)}")


class _CheckOutcome:
    """What `OrderCheck` and `OcoCheck` answer alike: whether to send, and each field's problems."""

    request: object
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return self.request is not None

    def messages(self, field_name: str) -> tuple[str, ...]:
        """The problems to show next to one form field."""
        return tuple(p.message for p in self.problems if p.field == field_name)


@dataclass(frozen=True)
class OrderCheck(_CheckOutcome):
    """The outcome of `check_order`.

    `request` is set only when there are no problems: the exact, rounded order to
    send. The figures are filled in as far as they could be worked out, problems
    or not, for the form to show: `amount` (base, after rounding), `price` (the
    limit price, or for a market order the reference price its value is estimated
    at), `notional` (quote), `fee` (estimated, quote; see the module notes),
    `balance_after` (the spent asset's free balance once the order is placed,
    negative by the shortfall when there is not enough; None without balances). `notes` explain every rounding and conversion.
    """

    request: OrderRequest | None
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    amount: Decimal | None = None
    price: Decimal | None = None
    notional: Decimal | None = None
    fee: Decimal | None = None
    balance_after: dict[str, Decimal] | None = field(default=None, hash=False, compare=True)


def check_order(
    market: Market,
    *,
    side: Side,
    type: OrderType,  # noqa: A002 - the order form's word
    amount: str | Decimal,
    price: str | Decimal | None = None,
    stop_price: str | Decimal | None = None,
    amount_in_quote: bool = False,
    reference_price: Decimal | None = None,
    balances: Mapping[str, Balance] | None = None,
    client_order_id: str = "",
    time_in_force: TimeInForce = TimeInForce.GTC,
    post_only: bool = False,
    style: NumberStyle = NumberStyle(),
    venue_title: str = "",
    max_client_id_length: int = CLIENT_ID_MAX,
) -> OrderCheck:
    """Check one order against `market`'s rules and the free `balances`.

    `reference_price` is the price a market order would trade at now (best ask
    for a buy, best bid for a sell); for a limit order it tells whether the order
    would trade at once. `venue_title` ("Binance") names the venue in messages;
    `max_client_id_length` is the venue's limit on client order ids.
    """
    _require_rules(market)
    if reference_price is not None and not isinstance(reference_price, Decimal):
        raise TypeError(f"reference_price must be a Decimal, not {reference_price.__class__.__name__}")
    with localcontext(_ARITH):
        return _Check(
            market, Side(side), OrderType(type), TimeInForce(time_in_force), bool(post_only), bool(amount_in_quote),
            style, venue_title, max_client_id_length,
        ).run(amount, price, stop_price, reference_price, balances, client_order_id)


class _Check:
    def __init__(self, market: Market, side: Side, kind: OrderType, tif: TimeInForce, post_only: bool,
                 in_quote: bool, style: NumberStyle, venue_title: str, max_client_id_length: int) -> None:
        self.m = market
        self.side = side
        self.kind = kind
        self.tif = tif
        self.post_only = post_only
        self.in_quote = in_quote
        self.style = style
        self.venue_title = venue_title
        self.max_client_id_length = max_client_id_length
        self.problems: list[Problem] = []
        self.notes: list[str] = []

    def problem(self, field_name: str, message: str) -> None:
        self.problems.append(Problem(field_name, message))

    def f(self, value: Decimal) -> str:
        return self.style.format(value)

    def run(self, amount: str | Decimal, price: str | Decimal | None, stop_price: str | Decimal | None,
            reference: Decimal | None, balances: Mapping[str, Balance] | None, client_order_id: str) -> OrderCheck:
        m, kind = self.m, self.kind
        self.check_shape(client_order_id)
        if reference is not None and (not reference.is_finite() or reference <= 0):
            reference = None  # a glitch in the book: treat the price as unknown rather than trade on it
        limit = stop = None
        if kind is not OrderType.MARKET:
            limit = self.price(price, "price", "Price", "a price", self.side)
        if kind is OrderType.STOP_LIMIT:
            stop = self.price(stop_price, "stop_price", "Stop price", "a stop price", None)
        if kind is OrderType.MARKET:
            exec_price = reference
            if reference is None:
                self.problem("price", f"Prices for {m.symbol} are not known yet: wait for the order book to load, "
                                      "then place the market order.")
        else:
            exec_price = limit
        base = self.amount(amount, exec_price)
        self.check_against_market(limit, stop, reference)
        notional = fee = balance_after = None
        if base is not None and exec_price is not None:
            notional = _plain(base * exec_price)
            self.check_notional(notional, exec_price)
            fee = _plain(_ceil_to(notional * self.fee_rate(limit, reference), FEE_PRECISION))
            if balances is not None:
                balance_after = self.check_balance(base, notional, fee, balances)
        request = None
        if not self.problems:
            assert base is not None
            request = OrderRequest(
                symbol=m.symbol,
                side=self.side,
                type=kind,
                amount=base,
                client_order_id=client_order_id,
                price=limit,
                stop_price=stop,
                time_in_force=self.tif,
                post_only=self.post_only,
            )
        return OrderCheck(request, tuple(self.problems), tuple(self.notes), base, exec_price, notional, fee,
                          balance_after)

    # -- the order as a whole --------------------------------------------------------------

    def check_shape(self, client_order_id: str) -> None:
        m, kind, tif = self.m, self.kind, self.tif
        if not m.active:
            self.problem("order", f"{m.symbol} is not open for trading right now: choose another market or try later.")
        if self.post_only and kind is not OrderType.LIMIT:
            self.problem("order", "Post-only applies to limit orders only: turn it off, or choose a limit order.")
        elif self.post_only and tif is not TimeInForce.GTC:
            self.problem("order", f"A post-only order rests on the book, so it cannot be {tif.value}: "
                                  "choose GTC or turn post-only off.")
        if kind is OrderType.MARKET and tif is not TimeInForce.GTC:
            self.problem("order", f"Market orders take what the book offers; {tif.value} applies to limit orders only: "
                                  "choose a limit order.")
        if kind is OrderType.STOP_LIMIT and tif is not TimeInForce.GTC:
            self.problem("order", f"A stop-limit order waits for its stop price, so it must be good-till-cancelled "
                                  f"(GTC), not {tif.value}.")
        self.check_client_id(client_order_id)

    def check_client_id(self, client_order_id: str) -> None:
        if not isinstance(client_order_id, str):
            raise TypeError("client_order_id must be a string")
        if not client_order_id:
            self.problem("order", "The order has no client order id; it is needed to find the order again "
                                  "if the connection drops. Try again.")
        elif not _CLIENT_ID.fullmatch(client_order_id) or len(client_order_id) > self.max_client_id_length:
            self.problem("order", f"Client order id '{_shown(client_order_id)}' may use only letters A-Z, digits, "
                                  f"'-' and '_', at most {self.max_client_id_length} characters.")

    # -- numbers ---------------------------------------------------------------------------------

    def number(self, value: str | Decimal | None, field_name: str, label: str, what: str) -> Decimal | None:
        """A positive number from the form, or None after recording why not."""
        if value is None:
            self.problem(field_name, f"Enter {what}.")
            return None
        if isinstance(value, Decimal):
            if not value.is_finite():
                self.problem(field_name, f"{label} is not a number: enter digits, for example {self.f(Decimal('0.5'))}.")
                return None
            number = value
        elif isinstance(value, str):
            try:
                number = parse_number(value, self.style, what=what)
            except NumberError as exc:
                self.problem(field_name, exc.message)
                return None
        else:
            raise TypeError(f"{field_name} must be text or a Decimal, not {type(value).__name__}")
        if number < 0:
            self.problem(field_name, f"{label} cannot be negative: enter {what} greater than zero.")
            return None
        if number == 0:
            self.problem(field_name, f"Enter {what} greater than zero.")
            return None
        if number >= _LIMIT:
            self.problem(field_name, f"{label} {self.f(number)} is too large: use at most {MAX_INTEGER_DIGITS} "
                                     f"digits before the {_point_name(self.style.decimal_point)}.")
            return None
        return number

    def price(self, value: str | Decimal | None, field_name: str, label: str, what: str,
              side: Side | None) -> Decimal | None:
        m = self.m
        typed = self.number(value, field_name, label, what)
        if typed is None:
            return None
        rounded = round_price(m, typed, side=side)
        tick = self.f(m.price_tick)
        if rounded == 0:
            self.problem(field_name, f"{label} {self.f(typed)} {m.quote} rounds to 0 at the tick {tick} {m.quote}: "
                                     f"enter at least {tick} {m.quote}.")
            return None
        if rounded != typed:
            note = f"{label} rounded to the tick {tick}: {self.f(typed)} -> {self.f(rounded)} {m.quote}"
            against = (side is Side.BUY and rounded > typed) or (side is Side.SELL and rounded < typed)
            if against:
                note += f", {self.f(abs(rounded - typed))} {'above' if rounded > typed else 'below'} the price you typed"
            self.notes.append(note + ".")
        if m.min_price is not None and m.min_price > 0 and rounded < m.min_price:
            self.problem(field_name, f"{label} {self.f(rounded)} {m.quote} is below the minimum of "
                                     f"{self.f(m.min_price)} {m.quote}: raise the price.")
        if m.max_price is not None and m.max_price > 0 and rounded > m.max_price:
            self.problem(field_name, f"{label} {self.f(rounded)} {m.quote} is above the maximum of "
                                     f"{self.f(m.max_price)} {m.quote}: lower the price.")
        return rounded

    def amount(self, value: str | Decimal, exec_price: Decimal | None) -> Decimal | None:
        m = self.m
        unit = m.quote if self.in_quote else m.base
        typed = self.number(value, "amount", "Amount", "an amount")
        if typed is None:
            return None
        step = m.amount_step
        smallest = self.smallest_amount()
        if self.in_quote:
            if exec_price is None:
                return None  # the price's own problem says why the amount cannot be worked out
            base = _plain((typed // (exec_price * step)) * step)  # exact: the value never exceeds what was typed
            if base == 0:
                self.problem("amount", f"Amount {self.f(typed)} {unit} at {self.f(exec_price)} {m.quote} is less than one "
                                       f"step of {self.f(step)} {m.base}: enter at least "
                                       f"{self.f(_plain(smallest * exec_price))} {m.quote}.")
                return None
            self.notes.append(f"Amount {self.f(typed)} {m.quote} at {self.f(exec_price)} {m.quote} converted to "
                              f"{self.f(base)} {m.base} (truncated to the step {self.f(step)} {m.base}).")
        else:
            base = round_amount(m, typed)
            if base == 0:
                self.problem("amount", f"Amount {self.f(typed)} {m.base} is smaller than one step of {self.f(step)} "
                                       f"{m.base}: enter at least {self.f(smallest)} {m.base}.")
                return None
            if base != typed:
                self.notes.append(f"Amount truncated to the step {self.f(step)}: {self.f(typed)} -> "
                                  f"{self.f(base)} {m.base}.")
        if base < m.min_amount:
            self.problem("amount", f"Amount {self.f(base)} {m.base} is below the minimum of {self.f(m.min_amount)} "
                                   f"{m.base}: increase the amount.")
        if m.max_amount is not None and m.max_amount > 0 and base > m.max_amount:
            self.problem("amount", f"Amount {self.f(base)} {m.base} is above the maximum of {self.f(m.max_amount)} "
                                   f"{m.base} for one order: split it into smaller orders.")
        return base

    def smallest_amount(self, at_least: Decimal = ZERO) -> Decimal:
        """The smallest whole number of steps that is at least `at_least`, the minimum amount and one step."""
        step = self.m.amount_step
        floor = max(at_least, self.m.min_amount, step)
        return _plain(_ceil_to(floor / step, Decimal(1)) * step) if floor % step else _plain(floor)

    # -- against the market and the account ----------------------------------------------------

    def crosses(self, price: Decimal, reference: Decimal) -> bool:
        return price >= reference if self.side is Side.BUY else price <= reference

    def check_against_market(self, limit: Decimal | None, stop: Decimal | None, reference: Decimal | None) -> None:
        if reference is None:
            return
        quote = self.m.quote
        best = "best ask" if self.side is Side.BUY else "best bid"
        if self.kind is OrderType.LIMIT and limit is not None and self.crosses(limit, reference):
            if self.post_only:
                away = "below" if self.side is Side.BUY else "above"
                self.problem("price", f"A post-only {self.side.value} at {self.f(limit)} {quote} would trade at once "
                                      f"against the {best} {self.f(reference)} {quote}: set the price {away} "
                                      f"{self.f(reference)} or turn post-only off.")
            else:
                at = "at or above" if self.side is Side.BUY else "at or below"
                self.notes.append(f"The {self.side.value} limit {self.f(limit)} {quote} is {at} the {best} "
                                  f"{self.f(reference)} {quote}: it will trade at once (taker fee).")
        # A buy stop fires when the market rises to it, a sell stop when it falls to it.
        reached = stop is not None and (stop <= reference if self.side is Side.BUY else stop >= reference)
        if self.kind is OrderType.STOP_LIMIT and stop is not None and reached:
            beyond = "above" if self.side is Side.BUY else "below"
            self.problem("stop_price", f"The stop price {self.f(stop)} {quote} is already reached: the {best} is "
                                       f"{self.f(reference)} {quote}. Set the stop {beyond} {self.f(reference)}, "
                                       f"or use a limit order to trade now.")

    def check_notional(self, notional: Decimal, exec_price: Decimal, label: str = "Order value") -> None:
        m = self.m
        if m.min_notional <= 0 or notional >= m.min_notional:
            return
        places = max(m.price_decimals, _decimals(m.min_notional), 2)
        shown = notional.quantize(Decimal(1).scaleb(-places), rounding=ROUND_FLOOR)  # never shows the minimum itself
        needed = self.smallest_amount(m.min_notional / exec_price)
        if needed * exec_price < m.min_notional:  # the division above rounded at the 100th digit
            needed += m.amount_step
        at_least = f"{self.f(_plain(needed * exec_price))} {m.quote}" if self.in_quote else f"{self.f(needed)} {m.base}"
        whose = f"{self.venue_title}'s" if self.venue_title else "the"
        self.problem("total", f"{label} {format(shown, 'f').replace('.', self.style.decimal_point)} {m.quote} "
                              f"is below {whose} minimum of {self.f(m.min_notional)} {m.quote}: increase the amount "
                              f"to at least {at_least}.")

    def fee_rate(self, limit: Decimal | None, reference: Decimal | None) -> Decimal:
        m = self.m
        if self.kind is OrderType.LIMIT and limit is not None:
            if self.post_only or (reference is not None and not self.crosses(limit, reference)):
                return m.maker_fee
        return m.taker_fee

    def check_balance(self, base: Decimal, notional: Decimal, fee: Decimal,
                      balances: Mapping[str, Balance]) -> dict[str, Decimal]:
        m = self.m
        if self.side is Side.BUY:
            rate = m.maker_fee if self.post_only else max(m.maker_fee, m.taker_fee)
            reserve_fee = max(fee, _plain(_ceil_to(notional * rate, FEE_PRECISION)))
            asset, need = m.quote, _plain(notional + reserve_fee)
            detail = f"buying {self.f(base)} {m.base} needs {self.f(need)} {m.quote} (value {self.f(notional)} + fee " \
                     f"{self.f(reserve_fee)})"
        else:
            asset, need = m.base, base
            detail = f"selling needs {self.f(base)} {m.base}"
        held = balances.get(asset)
        free = held.free if held is not None and held.free.is_finite() else ZERO
        if need > free:
            self.problem("balance", f"Not enough {asset}: {detail}, but only {self.f(free)} {asset} is free. "
                                    f"Reduce the amount, or add {asset} or cancel orders that hold it.")
        return {asset: _plain(free - need)}


def _decimals(value: Decimal) -> int:
    return max(0, -value.normalize().as_tuple().exponent)  # type: ignore[operator]


# -- OCO lists ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OcoCheck(_CheckOutcome):
    """The outcome of `check_oco`, like `OrderCheck` for the pair.

    `request` is set only when there are no problems. `notional` is the larger leg's value (what
    a buy reserves), `fee` the estimate for the leg that would cost more (maker on the limit leg,
    taker on the stop leg), `balance_after` the spent asset's free balance once the list is placed.
    """

    request: OcoRequest | None
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    amount: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    stop_limit_price: Decimal | None = None
    notional: Decimal | None = None
    fee: Decimal | None = None
    balance_after: dict[str, Decimal] | None = field(default=None, hash=False, compare=True)


def check_oco(
    market: Market,
    *,
    side: Side,
    amount: str | Decimal,
    price: str | Decimal | None,
    stop_price: str | Decimal | None,
    stop_limit_price: str | Decimal | None,
    last_price: Decimal | None,
    reference_price: Decimal | None = None,
    balances: Mapping[str, Balance] | None = None,
    list_client_id: str = "",
    limit_client_id: str = "",
    stop_client_id: str = "",
    style: NumberStyle = NumberStyle(),
    venue_title: str = "",
    max_client_id_length: int = CLIENT_ID_MAX,
) -> OcoCheck:
    """Check an OCO list (limit leg at `price`, stop-limit leg triggering at `stop_price` with limit
    `stop_limit_price`, both for `amount` base) against `market`'s rules, Binance's price relations
    around `last_price`, and the free `balances`. See the module notes."""
    _require_rules(market)
    for name, value in (("last_price", last_price), ("reference_price", reference_price)):
        if value is not None and not isinstance(value, Decimal):
            raise TypeError(f"{name} must be a Decimal, not {value.__class__.__name__}")
    with localcontext(_ARITH):
        check = _OcoCheck(market, Side(side), OrderType.STOP_LIMIT, TimeInForce.GTC, False, False, style, venue_title,
                          max_client_id_length)
        return check.run_oco(amount, price, stop_price, stop_limit_price, last_price, reference_price, balances,
                             (list_client_id, limit_client_id, stop_client_id))


class _OcoCheck(_Check):
    def run_oco(self, amount: str | Decimal, price: str | Decimal | None, stop_price: str | Decimal | None,
                stop_limit_price: str | Decimal | None, last: Decimal | None, reference: Decimal | None,
                balances: Mapping[str, Balance] | None, ids: tuple[str, str, str]) -> OcoCheck:
        m, side = self.m, self.side
        self.check_shape(ids[0])
        for cid in ids[1:]:
            self.check_client_id(cid)
        if len(set(ids)) < len(ids) and all(ids):
            self.problem("order", "The OCO list and its two legs need three different client ids. Try again.")
        if last is not None and (not last.is_finite() or last <= 0):
            last = None
        if reference is not None and (not reference.is_finite() or reference <= 0):
            reference = None
        limit = self.price(price, "price", "Limit price", "a limit price", side)
        stop = self.price(stop_price, "stop_price", "Stop price", "a stop price", None)
        stop_limit = self.price(stop_limit_price, "stop_limit_price", "Stop-limit price", "a stop-limit price", side)
        base = self.amount(amount, None)
        self.check_relations(limit, stop, stop_limit, last, reference)
        notional = fee = balance_after = None
        if base is not None and limit is not None and stop_limit is not None:
            legs = sorted(((limit, "The limit leg's value"), (stop_limit, "The stop-limit leg's value")))
            low_price, label = legs[0]
            self.check_notional(_plain(base * low_price), low_price, label)  # the other leg's value is higher
            limit_value, stop_value = _plain(base * limit), _plain(base * stop_limit)
            limit_fee = _plain(_ceil_to(limit_value * m.maker_fee, FEE_PRECISION))
            stop_fee = _plain(_ceil_to(stop_value * m.taker_fee, FEE_PRECISION))
            notional = max(limit_value, stop_value)
            fee = max(limit_fee, stop_fee)
            if balances is not None:
                balance_after = self.check_balance(base, notional, fee, balances)
        request = None
        if not self.problems:
            assert base is not None and limit is not None and stop is not None and stop_limit is not None
            request = OcoRequest(m.symbol, side, base, limit, stop, stop_limit, *ids)
        return OcoCheck(request, tuple(self.problems), tuple(self.notes), base, limit, stop, stop_limit, notional, fee,
                        balance_after)

    def check_relations(self, limit: Decimal | None, stop: Decimal | None, stop_limit: Decimal | None,
                        last: Decimal | None, reference: Decimal | None) -> None:
        m, q, f = self.m, self.m.quote, self.f
        if last is None:
            if limit is not None or stop is not None:
                self.problem("order", f"The last price of {m.symbol} is not known yet, and an OCO's prices are checked "
                                      "against it: wait for prices to load, then place the OCO.")
            return
        sell = self.side is Side.SELL
        limit_ok = limit is not None and (limit > last if sell else limit < last)
        if limit is not None and not limit_ok:
            where, word = ("above", "sell") if sell else ("below", "buy")
            self.problem("price", f"A {word} OCO's limit price must be {where} the last price {f(last)} {q}: "
                                  f"{f(limit)} is not. Set it {where} {f(last)}.")
        if stop is not None and not (stop < last if sell else stop > last):
            where, word = ("below", "sell") if sell else ("above", "buy")
            self.problem("stop_price", f"A {word} OCO's stop price must be {where} the last price {f(last)} {q}: "
                                       f"{f(stop)} is not. Set it {where} {f(last)}.")
        if limit_ok and reference is not None and self.crosses(limit, reference):  # type: ignore[arg-type]
            best, away = ("best bid", "above") if sell else ("best ask", "below")
            self.problem("price", f"The limit leg at {f(limit)} {q} would trade at once against the {best} "  # type: ignore[arg-type]
                                  f"{f(reference)} {q}, and an OCO's limit leg may only rest on the book: set it "
                                  f"{away} {f(reference)}.")
        if stop is not None and stop_limit is not None and (stop_limit > stop if sell else stop_limit < stop):
            where = "above" if sell else "below"
            self.notes.append(f"The stop-limit price {f(stop_limit)} {q} is {where} the stop price {f(stop)} {q}: once "
                              f"the stop triggers, the {self.side.value} waits {where} the market and may not fill.")
