"""Order matching and the account behind the simulated market.

Rules, chosen to behave like a real spot exchange without its complexity:
- market orders walk the simulated book from the touch, so size costs slippage,
  and pay the taker fee; what the book cannot fill is cancelled;
- limit orders that cross the book on arrival take liquidity like a market
  order capped at the limit; the rest rests and fills whole, at its limit price
  and the maker fee, when a trade prints at or through that price;
- stop-limit orders wait until a print reaches the stop, then act as a limit;
- OCO lists (a maker-only limit leg and a stop-limit leg on the same amount)
  follow Binance: prices must straddle the last price (sell: limit > last > stop;
  buy: limit < last < stop); the funds are reserved once for the list; the stop
  triggering, or the limit leg filling even partly, cancels the other leg; a
  cancel of either leg cancels both;
- funds are reserved when an order is accepted and released when it ends;
- the exchange's own rules (step, tick, minimum amount and order value, unique
  client order id) are enforced, and a refusal says which rule and what to do.
Fees are charged in the quote currency, to 8 decimals (the quote's precision, not
the price tick's) and rounded up on the order's running total, so an order's fee is
its traded value times the rate and the funds reserved for a buy always cover it.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from decimal import ROUND_UP, Decimal, InvalidOperation, localcontext

from app.domain import (
    ZERO,
    Balance,
    Fill,
    Market,
    Order,
    OrderBook,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from app.venues.base import InsufficientFunds, OcoRequest, OrderList, OrderNotFound, OrderRejected, UnknownSymbol


QUOTE_PRECISION = Decimal("1e-8")


def round_fee(value: Decimal) -> Decimal:
    """A fee to the quote's precision, rounded up: the venue never undercharges."""
    with localcontext() as ctx:
        ctx.prec = max(ctx.prec, value.adjusted() + 12)  # quantize must not fail on a huge (absurd) value
        return value.quantize(QUOTE_PRECISION, rounding=ROUND_UP)


def fmt(value: Decimal) -> str:
    """A Decimal as a user reads it: no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return text


class SimAccount:
    """Free and reserved balances per asset."""

    def __init__(self, balances: dict[str, Decimal]) -> None:
        self._free: dict[str, Decimal] = dict(balances)
        self._used: dict[str, Decimal] = {}

    def free(self, asset: str) -> Decimal:
        return self._free.get(asset, ZERO)

    def reserve(self, asset: str, amount: Decimal, purpose: str) -> None:
        free = self.free(asset)
        if amount > free:
            raise InsufficientFunds(
                f"Not enough {asset}: {purpose} needs {fmt(amount)} {asset}, but only {fmt(free)} {asset} is free. "
                f"Reduce the amount or free up {asset} by cancelling open orders."
            )
        self._free[asset] = free - amount
        self._used[asset] = self._used.get(asset, ZERO) + amount

    def release(self, asset: str, amount: Decimal) -> None:
        self._used[asset] = self._used.get(asset, ZERO) - amount
        self._free[asset] = self.free(asset) + amount

    def spend_reserved(self, asset: str, amount: Decimal) -> None:
        self._used[asset] = self._used.get(asset, ZERO) - amount

    def credit(self, asset: str, amount: Decimal) -> None:
        self._free[asset] = self.free(asset) + amount

    def balances(self) -> dict[str, Balance]:
        assets = set(self._free) | set(self._used)
        return {a: Balance(a, self.free(a), self._used.get(a, ZERO)) for a in sorted(assets)}


@dataclass(frozen=True, slots=True)
class _List:
    """An OCO list: its venue id and its legs' order ids."""

    id: str
    client_id: str
    symbol: str
    limit: str  # order id of the limit leg
    stop: str  # order id of the stop-limit leg


@dataclass(slots=True)
class _Working:
    """Mutable state of one order while the matcher owns it."""

    request: OrderRequest
    id: str
    ts: int
    status: OrderStatus = OrderStatus.OPEN
    triggered: bool = False
    filled: Decimal = ZERO
    cost: Decimal = ZERO
    fee: Decimal = ZERO
    fee_due: Decimal = ZERO  # the exact, unrounded fee of the fills so far
    reserved: Decimal = ZERO  # still held for this order (quote for buys, base for sells)
    fills: list[Fill] = field(default_factory=list)
    reason: str = ""
    list_id: str = ""  # the client id of the OCO list this order is a leg of

    def snapshot(self, quote: str) -> Order:
        r = self.request
        return Order(
            id=self.id,
            client_order_id=r.client_order_id,
            symbol=r.symbol,
            side=r.side,
            type=r.type,
            status=self.status,
            amount=r.amount,
            ts=self.ts,
            price=r.price,
            stop_price=r.stop_price,
            filled=self.filled,
            average_price=(self.cost / self.filled) if self.filled else None,
            fee=self.fee,
            fee_asset=quote,
            fills=tuple(self.fills),
            reason=self.reason,
        )


class SimMatcher:
    """Accepts, matches and cancels orders against the simulated book."""

    def __init__(self, markets: dict[str, Market], account: SimAccount) -> None:
        self.markets = markets
        self.account = account
        self._orders: dict[str, _Working] = {}
        self._by_client: dict[str, str] = {}
        self._lists: dict[str, _List] = {}  # by list client id
        # Ids unique across runs: a journal keeps orders and fills of earlier runs, keyed by these ids.
        self._run = secrets.token_hex(3)
        self._ids = itertools.count(1)
        self._trade_ids = itertools.count(1)

    # -- queries -------------------------------------------------------------

    def get(self, order_id: str) -> Order:
        w = self._orders.get(order_id)
        if w is None:
            raise OrderNotFound(f"The simulated market has no order {order_id}.")
        return w.snapshot(self.markets[w.request.symbol].quote)

    def get_by_client_id(self, client_order_id: str) -> Order:
        order_id = self._by_client.get(client_order_id)
        if order_id is None:
            raise OrderNotFound(f"The simulated market has no order with client id {client_order_id}.")
        return self.get(order_id)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [
            self.get(w.id)
            for w in self._orders.values()
            if not w.status.is_final and (symbol is None or w.request.symbol == symbol)
        ]

    # -- validation ----------------------------------------------------------

    def _market(self, symbol: str) -> Market:
        market = self.markets.get(symbol)
        if market is None:
            raise UnknownSymbol(
                f"The simulated market does not list {symbol}. Listed: {', '.join(sorted(self.markets))}."
            )
        return market

    @staticmethod
    def _check_multiple(value: Decimal, step: Decimal, what: str, unit: str) -> None:
        try:
            off_grid = value % step != 0
        except InvalidOperation:  # more digits than Decimal's precision: no real order is that large
            raise OrderRejected(f"{what} {fmt(value)} {unit} is too large.") from None
        if off_grid:
            raise OrderRejected(
                f"{what} {fmt(value)} {unit} is not a multiple of {fmt(step)}: use at most "
                f"{max(0, -step.normalize().as_tuple().exponent)} decimals."  # type: ignore[operator]
            )

    def _validate(self, req: OrderRequest, m: Market, book: OrderBook) -> Decimal:
        """Check the exchange's rules; return the reference price for the order value."""
        if req.client_order_id in self._by_client:
            raise OrderRejected(
                f"Client order id {req.client_order_id} was already used; each order needs a new one."
            )
        if not req.amount.is_finite() or req.amount <= 0:
            raise OrderRejected("The amount must be a number greater than zero.")
        self._check_multiple(req.amount, m.amount_step, "Amount", m.base)
        if req.amount < m.min_amount:
            raise OrderRejected(f"Amount {fmt(req.amount)} {m.base} is below the minimum of {fmt(m.min_amount)} {m.base}.")
        if req.type is OrderType.MARKET:
            if req.side is Side.BUY:
                ref = book.asks[0].price
            else:
                ref = book.bids[0].price
        else:
            if req.price is None or not req.price.is_finite() or req.price <= 0:
                raise OrderRejected("A limit order needs a price greater than zero.")
            self._check_multiple(req.price, m.price_tick, "Price", m.quote)
            ref = req.price
        if req.type is OrderType.STOP_LIMIT:
            if req.stop_price is None or not req.stop_price.is_finite() or req.stop_price <= 0:
                raise OrderRejected("A stop-limit order needs a stop price greater than zero.")
            self._check_multiple(req.stop_price, m.price_tick, "Stop price", m.quote)
        notional = req.amount * ref
        if notional < m.min_notional:
            raise OrderRejected(
                f"Order value {fmt(notional.quantize(m.price_tick))} {m.quote} is below the minimum of "
                f"{fmt(m.min_notional)} {m.quote}: increase the amount."
            )
        return ref

    # -- placing and cancelling ------------------------------------------------

    def submit(self, req: OrderRequest, book: OrderBook, last: Decimal, now_ms: int) -> Order:
        m = self._market(req.symbol)
        ref = self._validate(req, m, book)
        w = _Working(req, f"SIM-{self._run}-{next(self._ids)}", now_ms)
        if req.side is Side.BUY:
            # The most the order can spend: fills never cost more than this value (a
            # market order walks the same book; a limit never pays above its price) and
            # the fee, rounded up on the running total (see _fill), never exceeds the
            # taker fee of it rounded up (the maker fee is never above the taker fee).
            cost = self._walk_cost(book.asks, req.amount) if req.type is OrderType.MARKET else req.amount * ref
            need = cost + round_fee(cost * m.taker_fee)
            self.account.reserve(m.quote, need, f"buying {fmt(req.amount)} {m.base}")
        else:
            need = req.amount
            self.account.reserve(m.base, need, f"selling {fmt(req.amount)} {m.base}")
        w.reserved = need
        if req.post_only and req.type is OrderType.LIMIT and self._crosses(req, book):
            w.reason = (
                f"The post-only order at {fmt(req.price)} {m.quote} would trade at once; "  # type: ignore[arg-type]
                "move the price away from the market."
            )
            self._finish(w, m, OrderStatus.REJECTED)
            self._register(w)  # kept, so reconciling by client order id finds it rejected and why
            raise OrderRejected(w.reason)
        self._register(w)
        if req.type is OrderType.STOP_LIMIT and not self._stop_reached(req, last):
            return w.snapshot(m.quote)
        w.triggered = True
        self._take(w, m, book, now_ms)
        return w.snapshot(m.quote)

    def _register(self, w: _Working) -> None:
        self._orders[w.id] = w
        self._by_client[w.request.client_order_id] = w.id

    def cancel(self, order_id: str) -> Order:
        w = self._orders.get(order_id)
        if w is None:
            raise OrderNotFound(f"The simulated market has no order {order_id}.")
        m = self.markets[w.request.symbol]
        if w.status.is_final:
            raise OrderRejected(f"Order {order_id} is already {w.status.value}; there is nothing to cancel.")
        if w.list_id:
            self.cancel_list(w.list_id)  # like Binance: cancelling one leg cancels the whole list
        else:
            self._finish(w, m, OrderStatus.CANCELED)
        return w.snapshot(m.quote)

    # -- OCO lists ---------------------------------------------------------------

    def submit_oco(self, oco: OcoRequest, book: OrderBook, last: Decimal, now_ms: int) -> OrderList:
        """Accept both legs of an OCO, or neither (each refusal says which rule, as Binance words it)."""
        m = self._market(oco.symbol)
        limit_req, stop_req = oco.legs()
        if oco.list_client_id in self._lists:
            raise OrderRejected(f"OCO list id {oco.list_client_id} was already used; each list needs a new one.")
        if limit_req.client_order_id == stop_req.client_order_id:
            raise OrderRejected("The two legs of an OCO need different client order ids.")
        for leg in (limit_req, stop_req):
            self._validate(leg, m, book)
        q = m.quote
        if oco.side is Side.SELL and not (oco.price > last > oco.stop_price):
            raise OrderRejected(
                f"The relationship of the prices for the orders is not correct: a sell OCO needs the limit price "
                f"({fmt(oco.price)}) above the last price ({fmt(last)} {q}) and the stop price ({fmt(oco.stop_price)}) "
                "below it.")
        if oco.side is Side.BUY and not (oco.price < last < oco.stop_price):
            raise OrderRejected(
                f"The relationship of the prices for the orders is not correct: a buy OCO needs the limit price "
                f"({fmt(oco.price)}) below the last price ({fmt(last)} {q}) and the stop price ({fmt(oco.stop_price)}) "
                "above it.")
        if self._crosses(limit_req, book):
            raise OrderRejected(f"The OCO's limit leg at {fmt(oco.price)} {q} would trade at once (it is maker-only): "
                                "move it away from the market.")
        if oco.side is Side.BUY:
            # One reservation for the list, enough for whichever leg ends up trading (and its fee).
            cost = oco.amount * max(oco.price, oco.stop_limit_price)
            need = cost + round_fee(cost * m.taker_fee)
            self.account.reserve(q, need, f"buying {fmt(oco.amount)} {m.base}")
        else:
            need = oco.amount
            self.account.reserve(m.base, need, f"selling {fmt(oco.amount)} {m.base}")
        run = next(self._ids)
        limit = _Working(limit_req, f"SIM-{self._run}-{run}", now_ms, reserved=need, list_id=oco.list_client_id)
        stop = _Working(stop_req, f"SIM-{self._run}-{run}s", now_ms, list_id=oco.list_client_id)
        self._register(limit)
        self._register(stop)
        self._lists[oco.list_client_id] = _List(f"SIML-{self._run}-{run}", oco.list_client_id, oco.symbol,
                                                limit.id, stop.id)
        return self.get_list(oco.list_client_id)

    def get_list(self, list_client_id: str) -> OrderList:
        lst = self._lists.get(list_client_id)
        if lst is None:
            raise OrderNotFound(f"The simulated market has no OCO list {list_client_id}.")
        quote = self.markets[lst.symbol].quote
        return OrderList(lst.id, lst.client_id, lst.symbol,
                         (self._orders[lst.limit].snapshot(quote), self._orders[lst.stop].snapshot(quote)))

    def cancel_list(self, list_client_id: str) -> OrderList:
        lst = self._lists.get(list_client_id)
        if lst is None:
            raise OrderNotFound(f"The simulated market has no OCO list {list_client_id}.")
        legs = [self._orders[lst.limit], self._orders[lst.stop]]
        if all(w.status.is_final for w in legs):
            raise OrderRejected(f"OCO list {list_client_id} has already ended; there is nothing to cancel.")
        m = self.markets[lst.symbol]
        for w in legs:
            if not w.status.is_final:
                self._finish(w, m, OrderStatus.CANCELED)
        return self.get_list(list_client_id)

    def _sibling(self, w: _Working) -> _Working | None:
        lst = self._lists.get(w.list_id) if w.list_id else None
        if lst is None:
            return None
        other = self._orders[lst.stop if w.id == lst.limit else lst.limit]
        return None if other.status.is_final else other

    def _activate(self, w: _Working, m: Market, why: str) -> _Working | None:
        """`w` has started to trade (filled, or its stop triggered): cancel its OCO sibling, handing the list's
        reservation over to `w`. Returns the cancelled sibling."""
        other = self._sibling(w)
        if other is None:
            return None
        w.reserved += other.reserved
        other.reserved = ZERO
        other.reason = f"Cancelled by the market: the other leg of OCO {w.list_id} {why}."
        other.status = OrderStatus.CANCELED
        return other

    # -- matching ----------------------------------------------------------------

    @staticmethod
    def _walk_cost(levels: tuple, amount: Decimal) -> Decimal:
        cost, left = ZERO, amount
        for level in levels:
            take = min(left, level.amount)
            cost += take * level.price
            left -= take
            if left <= 0:
                return cost
        # Deeper than the book: price the rest at the last level so the reserve is conservative.
        return cost + left * (levels[-1].price if levels else ZERO)

    @staticmethod
    def _available(levels: tuple, limit: Decimal | None, side: Side) -> Decimal:
        total = ZERO
        for level in levels:
            if limit is not None and (level.price > limit if side is Side.BUY else level.price < limit):
                break
            total += level.amount
        return total

    @staticmethod
    def _crosses(req: OrderRequest, book: OrderBook) -> bool:
        assert req.price is not None
        if req.side is Side.BUY:
            return bool(book.asks) and req.price >= book.asks[0].price
        return bool(book.bids) and req.price <= book.bids[0].price

    @staticmethod
    def _stop_reached(req: OrderRequest, last: Decimal) -> bool:
        assert req.stop_price is not None
        return last >= req.stop_price if req.side is Side.BUY else last <= req.stop_price

    def _take(self, w: _Working, m: Market, book: OrderBook, now_ms: int) -> None:
        """Take liquidity from the book for a market or marketable limit order."""
        req = w.request
        levels = book.asks if req.side is Side.BUY else book.bids
        limit = req.price if req.type is not OrderType.MARKET else None
        left = req.amount - w.filled
        if req.time_in_force is TimeInForce.FOK and self._available(levels, limit, req.side) < left:
            self._finish(w, m, OrderStatus.CANCELED)  # fill-or-kill: all at once or nothing
            return
        for level in levels:
            if left <= 0:
                break
            if limit is not None and (level.price > limit if req.side is Side.BUY else level.price < limit):
                break
            take = min(left, level.amount)
            self._fill(w, m, level.price, take, now_ms, maker=False)
            left -= take
        if left <= 0:
            self._finish(w, m, OrderStatus.FILLED)
        elif req.type is OrderType.MARKET or req.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            self._finish(w, m, OrderStatus.CANCELED)  # what the book could not fill expires, like on an exchange
        elif w.filled:
            w.status = OrderStatus.PARTIALLY_FILLED

    def _fill(self, w: _Working, m: Market, price: Decimal, amount: Decimal, now_ms: int, maker: bool) -> None:
        notional = price * amount
        w.fee_due += notional * (m.maker_fee if maker else m.taker_fee)
        fee = round_fee(w.fee_due) - w.fee  # rounding the running total: the order's fee is rounded once
        if w.request.side is Side.BUY:
            spent = notional + fee
            self.account.spend_reserved(m.quote, spent)
            w.reserved -= spent
            self.account.credit(m.base, amount)
        else:
            self.account.spend_reserved(m.base, amount)
            w.reserved -= amount
            self.account.credit(m.quote, notional - fee)
        w.filled += amount
        w.cost += notional
        w.fee += fee
        w.fills.append(
            Fill(w.id, f"SIMT-{self._run}-{next(self._trade_ids)}", m.symbol, w.request.side, price, amount, fee, m.quote, now_ms, maker)
        )

    def _finish(self, w: _Working, m: Market, status: OrderStatus) -> None:
        w.status = status
        if w.reserved:
            self.account.release(m.quote if w.request.side is Side.BUY else m.base, w.reserved)
            w.reserved = ZERO

    def on_print(self, symbol: str, price: Decimal, book: OrderBook, now_ms: int,
                 size: Decimal | None = None) -> list[Order]:
        """A trade printed at `price`: trigger stops and fill resting limits it reached.

        `size` caps how much of each resting limit the print fills (a real print of that size); None
        fills them whole (the simulated market's own prints, whose sizes are synthetic)."""
        changed: list[Order] = []
        for w in list(self._orders.values()):
            req = w.request
            if req.symbol != symbol or w.status.is_final:
                continue
            m = self.markets[symbol]
            if req.type is OrderType.STOP_LIMIT and not w.triggered:
                if not self._stop_reached(req, price):
                    continue
                w.triggered = True
                # Binance: the stop triggering activates the leg, and that cancels the other one.
                cancelled = self._activate(w, m, "triggered its stop")
                self._take(w, m, book, now_ms)
                changed.append(w.snapshot(m.quote))
                if cancelled is not None:
                    changed.append(cancelled.snapshot(m.quote))
                continue
            assert req.price is not None
            reached = price <= req.price if req.side is Side.BUY else price >= req.price
            if reached:
                left = req.amount - w.filled
                take = left if size is None else min(left, size)
                if take <= 0:
                    continue
                cancelled = self._activate(w, m, "filled" if take == left else "partly filled")
                self._fill(w, m, req.price, take, now_ms, maker=True)
                if take == left:
                    self._finish(w, m, OrderStatus.FILLED)
                else:
                    w.status = OrderStatus.PARTIALLY_FILLED
                changed.append(w.snapshot(m.quote))
                if cancelled is not None:
                    changed.append(cancelled.snapshot(m.quote))
        return changed
