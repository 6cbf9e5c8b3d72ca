"""The order service: journal first, send once, reconcile by client order id.

The flow (DESIGN.md, "Orders"):

    validate -> journal row PENDING, committed (fsync'd) -> venue.create_order, exactly once
      -> OPEN / PARTIALLY_FILLED / FILLED / REJECTED from the answer
      -> UNKNOWN when the answer is anything but a definite one -> reconcile by client order id

Decisions others rely on:

* An order is never resent. A second order with a client id the journal already
  holds is refused (`DuplicateClientOrderId`). `may_resend(cid)` is True only
  when the order is known not to exist on the venue; `resend(cid)` then sends the
  same request under a new client id.
* Only a definite refusal of the order settles it as REJECTED at once:
  `OrderRejected` (and `InsufficientFunds`), `VenueAuthError`, `UnknownSymbol`.
  Everything else from `create_order` -- `OrderOutcomeUnknown`, but also a plain
  `VenueUnavailable` or any other error, and the submit being cancelled -- makes
  the order UNKNOWN and reconciles it: exchanges say a 5xx answer to an order
  has an unknown outcome, and a venue adapter that maps one to a plain error must
  not be able to make us lose or double an order.
* "Known not to exist" needs a positive answer: `OrderNotFound` from
  `fetch_order_by_client_id`, given at a time when the original request can no
  longer reach the matching engine. A request may still be in flight after the
  client gave up (Binance accepts a signed request up to its `recvWindow`, 10 s
  in ccxt, after signing), so a "not found" is final only once `settle_window`
  seconds (default 15) have passed since the outcome became unknown -- or, for
  rows left PENDING/UNKNOWN by a previous run, since this service was created
  (the old process, and any request it sent, ended before that). A network
  error, an open circuit, an unsupported lookup, or the order's absence from
  open orders or history never counts as "not there": the order then stays
  UNKNOWN and is retried with capped exponential backoff and full jitter.
* When the venue cannot look an order up by client id, reconciliation searches
  its open orders and, if the venue has an optional
  `fetch_closed_orders(symbol) -> list[Order]`, its recent history. Found there,
  the order is known to exist; not found, it stays UNKNOWN (the sentence on the
  row tells the user to check on the venue).
* `start()` reconciles every PENDING/UNKNOWN row of this venue and then refreshes
  the OPEN/PARTIALLY_FILLED ones (fills while the app was closed) before it sets
  `trading_enabled`; `submit` raises `TradingDisabled` until then. If the venue
  is unreachable, `start()` keeps waiting; run it as a task.
* Events (published on the loop thread after the journal commit):
  `order.updated` (Order, MEDIUM) on every change of a row, PENDING included;
  `trade.executed` (Fill, MEDIUM) once per fill, de-duplicated by (venue, trade
  id) in SQLite, so across refreshes and restarts; `order.rejected` (Order,
  HIGH) when an order ends REJECTED or not placed, with the sentence in
  `Order.reason`. Venues that report only cumulative fills get synthetic fills
  with id "<order id>:<cumulative filled>".
* `submit` returns the Order in every venue outcome (check `status` and
  `reason`); it raises only when nothing was journalled or sent: validation,
  duplicate client id, trading disabled, the data file failing.
* All SQLite work runs on the store's thread (`store.run`); `orders()` and
  `may_resend()` read an in-memory copy of the journal that every write updates.
* OCO lists (`submit_oco`, venues with `supports_oco`): the two legs are two ordinary
  journal rows linked by `list_id` (the list's client id), both written PENDING in one
  durable transaction before the list is sent once. Everything above applies to each leg:
  a lost answer makes both UNKNOWN and each is reconciled by its own client id (a venue
  places a list whole or not at all, so they settle alike); refresh follows each leg.
  Cancelling either leg cancels the list (`venue.cancel_order_list`). A venue without OCO
  is refused with a sentence before anything is journalled.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from app.bus import EventBus, Priority
from app.domain import Fill, Order, OrderRequest, OrderStatus
from app.store import Store
from app.trading.journal import LIVE, JournalEntry, OrderJournal, statuses
from app.venues.base import (
    OcoRequest,
    OrderList,
    OrderNotFound,
    OrderOutcomeUnknown,
    OrderRejected,
    UnknownSymbol,
    Venue,
    VenueAuthError,
    VenueError,
    VenueUnavailable,
    oco_unsupported,
)

log = logging.getLogger(__name__)

TOPIC_ORDER_UPDATED = "order.updated"
TOPIC_ORDER_REJECTED = "order.rejected"
TOPIC_TRADE_EXECUTED = "trade.executed"

Validator = Callable[[OrderRequest], "None | Awaitable[None]"]
"""Raises `OrderRejected` (or ValueError) with a sentence when a request must not be sent."""

OcoValidator = Callable[[OcoRequest], "None | Awaitable[None]"]
"""The same for an OCO list as a whole (the runtime's rules with fresh balances, then risk)."""

CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")  # what Binance accepts; the other venues accept at least this


def new_client_order_id() -> str:
    """"mt" + 20 random hex digits: short, unique, and safe on every venue (MT5's comment allows 31)."""
    return "mt" + secrets.token_hex(10)


class OrderServiceError(VenueError):
    """The order service refused a request before anything was sent; `str(err)` is for the user."""


class TradingDisabled(OrderServiceError):
    pass


class DuplicateClientOrderId(OrderServiceError):
    pass


class OrderStillUnknown(OrderServiceError):
    """The order's state on the venue is still being checked."""


class CannotCancel(OrderServiceError):
    pass


_DEFINITE_REFUSALS = (OrderRejected, VenueAuthError, UnknownSymbol)


class _Lookup:
    FOUND = "found"
    ABSENT = "absent"  # the venue positively said it has no such order
    UNREACHABLE = "unreachable"
    INCONCLUSIVE = "inconclusive"


@dataclass
class PlaceOrder:
    """The command behind the order ticket: `validate()`, `execute()`, `undo()` (cancel where the venue allows)."""

    service: OrderService
    request: OrderRequest
    order: Order | None = None
    validated: bool = field(default=False, repr=False)

    async def validate(self) -> None:
        await self.service.validate(self.request)
        self.validated = True

    async def execute(self) -> Order:
        if self.order is not None:
            raise OrderServiceError(f"Order {self.request.client_order_id} was already sent; it is never sent twice.")
        if not self.validated:
            await self.validate()
        self.order = await self.service._submit_validated(self.request)
        return self.order

    async def undo(self) -> Order:
        if self.order is None:
            raise CannotCancel("This order was never sent, so there is nothing to cancel.")
        self.order = await self.service.cancel(self.request.client_order_id, self.request.symbol)
        return self.order


class OrderService:
    """Orders on one venue, journalled in SQLite. See the module docstring."""

    def __init__(
        self,
        venue: Venue,
        store: Store,
        bus: EventBus,
        *,
        validator: Validator | None = None,
        oco_validator: OcoValidator | None = None,
        clock: Callable[[], float] = time.time,
        new_client_id: Callable[[], str] = new_client_order_id,
        settle_window: float = 15.0,
        backoff_first: float = 0.5,
        backoff_max: float = 30.0,
        poll_interval: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.venue = venue
        self.bus = bus
        self.journal = OrderJournal(store)
        self.validator = validator
        self.oco_validator = oco_validator
        self._clock = clock
        self._new_client_id = new_client_id
        self.settle_window = settle_window
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.poll_interval = poll_interval
        self._rng = rng
        self._born = clock()  # any request of an earlier run was sent before this instant
        self._entries: dict[str, JournalEntry] = {}
        self._reconcilers: dict[str, asyncio.Task[JournalEntry]] = {}
        self._placing: dict[str, asyncio.Task[Order]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self._trading_enabled = False
        self.lookups = 0  # reconciliation lookups made, for the health panel and tests

    # ------------------------------------------------------------------ properties

    @property
    def trading_enabled(self) -> bool:
        """False until `start()` has settled every order the last run left unsettled."""
        return self._trading_enabled

    @property
    def venue_name(self) -> str:
        return self.venue.name

    @property
    def title(self) -> str:
        return str(getattr(self.venue, "title", "") or self.venue.name)

    @property
    def supports_oco(self) -> bool:
        """The venue takes OCO lists (the ticket offers OCO only then)."""
        return bool(getattr(self.venue, "supports_oco", False))

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Reconcile what the last run left unsettled, fetch fills of live orders, then enable trading."""
        if self._started:
            return
        self._started = True
        for entry in await self.journal.load(self.venue_name):
            self._entries[entry.client_order_id] = entry
        unsettled = [e for e in self._entries.values() if not e.settled]
        if unsettled:
            log.info("%s: reconciling %d order(s) left unsettled by the last run before trading",
                     self.venue_name, len(unsettled))
        for entry in unsettled:
            # A PENDING row's request, if it went out at all, was signed before the last run ended; an
            # UNKNOWN row's before its updated_at. Either way the in-flight window runs from then.
            since = entry.updated_at / 1000 if entry.status is OrderStatus.UNKNOWN else self._born
            self._reconciler(entry.client_order_id, min(since, self._born) + self.settle_window)
        if unsettled:
            await asyncio.gather(*(asyncio.shield(self._reconcilers[e.client_order_id]) for e in unsettled),
                                 return_exceptions=True)
            if self._closed:
                return
            failed = [e.client_order_id for e in unsettled if not self._entries[e.client_order_id].settled]
            if failed:  # a reconciler died (a bug, or the data file failing): trading must stay off
                raise OrderServiceError(
                    f"Could not finish checking orders {', '.join(failed)} with {self.title}; trading stays off. "
                    "Restart Meridian Terminal; if this repeats, see the log file."
                )
        try:
            await self.refresh()
        except VenueError as exc:  # fills are fetched again by the next refresh; orders are already safe
            log.warning("%s: could not refresh open orders at start: %s", self.venue_name, exc)
        if self._closed:
            return
        self._trading_enabled = True
        if self.poll_interval:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name=f"orders-poll-{self.venue_name}")

    async def close(self) -> None:
        """Stop reconciling and polling. Unsettled orders stay in the journal for the next start."""
        self._closed = True
        self._trading_enabled = False
        tasks = [*self._reconcilers.values(), *self._tasks]
        if self._poller is not None:
            tasks.append(self._poller)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _poll(self) -> None:
        assert self.poll_interval
        while not self._closed:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.refresh()
            except VenueError as exc:
                log.info("%s: refreshing orders failed: %s", self.venue_name, exc)
            except Exception:
                log.exception("%s: refreshing orders failed", self.venue_name)

    # ------------------------------------------------------------------ queries

    def orders(self, status: OrderStatus | Iterable[OrderStatus] | None = None) -> list[JournalEntry]:
        """Journalled orders of this venue, oldest first (unsettled, live and recent final ones)."""
        wanted = statuses(status)
        rows = [e for e in self._entries.values() if wanted is None or e.status in wanted]
        return sorted(rows, key=lambda e: e.created_at)

    def entry(self, client_order_id: str) -> JournalEntry | None:
        return self._entries.get(client_order_id)

    def list_legs(self, list_id: str) -> list[JournalEntry]:
        """The journalled legs of OCO list `list_id`: the limit leg first."""
        legs = [e for e in self._entries.values() if list_id and e.list_id == list_id]
        return sorted(legs, key=lambda e: e.type.value != "limit")

    def may_resend(self, client_order_id: str) -> bool:
        """True only when the order is known not to exist on the venue (rejected, or not placed)."""
        entry = self._entries.get(client_order_id)
        return entry is not None and entry.may_resend

    async def wait_settled(self, client_order_id: str, timeout: float | None = None) -> JournalEntry:
        """The row once its venue state is known: waits for the placement and any reconciliation."""
        async with asyncio.timeout(timeout):
            placing = self._placing.get(client_order_id)
            if placing is not None and not placing.done():
                await asyncio.wait([placing])
            task = self._reconcilers.get(client_order_id)
            if task is not None and not task.done():
                await asyncio.shield(task)
        entry = self._entries.get(client_order_id)
        if entry is None:
            raise KeyError(client_order_id)
        return entry

    async def fills(self, client_order_id: str) -> list[Fill]:
        return await self.journal.fills(client_order_id)

    async def recent_fills(self, limit: int = 500) -> list[Fill]:
        """This venue's newest fills, oldest first (the trades table's start)."""
        return await self.journal.recent_fills(self.venue_name, limit)

    # ------------------------------------------------------------------ placing

    def place(self, request: OrderRequest) -> PlaceOrder:
        """The command for `request`; an empty client order id is replaced by a new one."""
        if not request.client_order_id:
            request = replace(request, client_order_id=self._new_client_id())
        return PlaceOrder(self, request)

    async def submit(self, request: OrderRequest) -> Order:
        """Validate, journal and send `request` once. See the module docstring for what it returns."""
        return await self.place(request).execute()

    async def resend(self, client_order_id: str) -> Order:
        """Send again, under a new client id, an order known not to exist on the venue."""
        entry = self._entries.get(client_order_id)
        if entry is None:
            raise OrderServiceError(f"There is no order {client_order_id} in the journal to send again.")
        if entry.list_id:
            return await self._resend_list(entry)
        if not entry.may_resend:
            state = "still being checked" if not entry.settled else entry.status.value.replace("_", " ")
            raise OrderServiceError(
                f"Order {client_order_id} cannot be sent again: it is {state} on {self.title}. Sending it again "
                "could trade twice."
            )
        return await self.submit(entry.request(self._new_client_id()))

    async def _resend_list(self, entry: JournalEntry) -> Order:
        """An OCO leg is only ever resent with its sibling, as a new list: never one leg alone."""
        legs = self.list_legs(entry.list_id)
        if len(legs) != 2 or not all(leg.may_resend for leg in legs):
            raise OrderServiceError(
                f"Order {entry.client_order_id} is a leg of OCO list {entry.list_id}, which cannot be sent again: "
                "both legs must be known not to exist on " + self.title + ". Sending it again could trade twice."
            )
        limit, stop = legs
        assert limit.price is not None and stop.price is not None and stop.stop_price is not None
        new = OcoRequest(entry.symbol, entry.side, entry.amount, limit.price, stop.stop_price, stop.price, "", "", "")
        return (await self.submit_oco(new))[0]

    async def submit_oco(self, request: OcoRequest) -> tuple[Order, Order]:
        """Validate, journal both legs and send the OCO list once. Returns (limit leg, stop leg) as known now:
        check each `status` and `reason`, as for `submit`. Empty client ids are replaced by new ones."""
        if not self.supports_oco:
            raise OrderServiceError(oco_unsupported(self.title))
        ids = {f: getattr(request, f) or self._new_client_id()
               for f in ("list_client_id", "limit_client_id", "stop_client_id")}
        request = replace(request, **ids)
        await self.validate_oco(request)
        return await self._submit_oco_validated(request)

    async def validate_oco(self, request: OcoRequest) -> None:
        ids = (request.list_client_id, request.limit_client_id, request.stop_client_id)
        for cid in ids:
            if not CLIENT_ID.fullmatch(cid or ""):
                raise OrderRejected(f"The client order id '{cid}' is not usable: use 1 to 36 letters, digits, '-' or '_' "
                                    "(or leave it empty to get one).")
        if len(set(ids)) < len(ids):
            raise OrderRejected("An OCO list and its two legs need three different client ids.")
        try:
            if self.oco_validator is not None:
                result = self.oco_validator(request)
                if inspect.isawaitable(result):
                    await result
            elif self.validator is not None:
                for leg in request.legs():  # each leg against the full free balance: the list reserves once
                    result = self.validator(leg)
                    if inspect.isawaitable(result):
                        await result
        except ValueError as exc:
            raise OrderRejected(str(exc)) from None

    async def _submit_oco_validated(self, request: OcoRequest) -> tuple[Order, Order]:
        for leg in request.legs():
            self._check_can_trade(leg)
        if any(e.list_id == request.list_client_id for e in self._entries.values()):
            raise self._duplicate(request.list_client_id)
        # Its own task, as for one order: a closed window must not stop it between sending and journalling.
        task = asyncio.get_running_loop().create_task(self._place_oco(request), name=f"place-oco-{request.list_client_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        for leg_cid in (request.limit_client_id, request.stop_client_id):
            self._placing[leg_cid] = task  # type: ignore[assignment] - waited on, never awaited for its value
            task.add_done_callback(
                lambda t, c=leg_cid: self._placing.pop(c, None) if self._placing.get(c) is t else None)
        return await asyncio.shield(task)

    async def _place_oco(self, request: OcoRequest) -> tuple[Order, Order]:
        now = self._now_ms()
        legs = request.legs()
        entries = [JournalEntry.pending(self.venue_name, leg, now, request.list_client_id) for leg in legs]
        if not await self.journal.insert_pending_many(entries):
            taken = next((e.client_order_id for e in entries if e.client_order_id in self._entries),
                         request.limit_client_id)
            raise self._duplicate(taken)
        # Committed, both legs: from here on a crash leaves two PENDING rows that the next start reconciles.
        for entry in entries:
            self._entries[entry.client_order_id] = entry
            self._publish_order(entry)
        cids = [leg.client_order_id for leg in legs]
        venue: Any = self.venue
        try:
            result: OrderList = await venue.create_oco(request)
        except _DEFINITE_REFUSALS as exc:
            sentence = self._oco_rejected_sentence(request, str(exc))
            return tuple([(await self._settle(c, OrderStatus.REJECTED, sentence)).order() for c in cids])  # type: ignore[return-value]
        except OrderOutcomeUnknown as exc:
            return tuple([(await self._unknown(c, str(exc))).order() for c in cids])  # type: ignore[return-value]
        except asyncio.CancelledError:
            log.warning("%s: placing OCO %s was cancelled mid-flight; its legs stay PENDING until reconciled",
                        self.venue_name, request.list_client_id)
            raise
        except Exception as exc:
            if not isinstance(exc, VenueUnavailable | VenueError):
                log.exception("%s: create_oco for %s failed unexpectedly", self.venue_name, request.list_client_id)
            detail = str(exc) or type(exc).__name__
            return tuple([(await self._unknown(c, detail)).order() for c in cids])  # type: ignore[return-value]
        out: list[Order] = []
        for leg, c in zip(legs, cids, strict=True):
            shown = result.leg(c) or next((o for o in result.orders if o.type is leg.type and not o.client_order_id), None)
            if shown is None:  # the venue's answer left this leg out: find it by its client id
                out.append((await self._unknown(c, f"{self.title}'s answer did not show this leg")).order())
                continue
            out.append((await self._apply(c, replace(shown, client_order_id=c))).order())
        return out[0], out[1]

    def _oco_rejected_sentence(self, request: OcoRequest, detail: str) -> str:
        detail = detail.strip() or f"{self.title} rejected the order list"
        return (f"Your OCO {request.side.value} of {format(request.amount, 'f')} {request.symbol} (limit "
                f"{format(request.price, 'f')}, stop {format(request.stop_price, 'f')} -> "
                f"{format(request.stop_limit_price, 'f')}; list {request.list_client_id}) was rejected: "
                f"{detail.rstrip('.')}. Nothing was traded.")

    async def validate(self, request: OrderRequest) -> None:
        if not CLIENT_ID.fullmatch(request.client_order_id or ""):
            raise OrderRejected(
                f"The client order id '{request.client_order_id}' is not usable: use 1 to 36 letters, digits, "
                "'-' or '_' (or leave it empty to get one)."
            )
        if self.validator is None:
            return
        try:
            result = self.validator(request)
            if inspect.isawaitable(result):
                await result
        except ValueError as exc:
            raise OrderRejected(str(exc)) from None

    def _check_can_trade(self, request: OrderRequest) -> None:
        if self._closed:
            raise TradingDisabled("The order service is closed; the order was not sent.")
        if not self.trading_enabled:
            if not self._started:
                raise TradingDisabled("Trading is not started yet; the order was not sent.")
            raise TradingDisabled(
                f"Trading is paused while orders from the last session are checked with {self.title}; "
                "the order was not sent. Try again when the check is done."
            )
        if request.client_order_id in self._entries:
            raise self._duplicate(request.client_order_id)

    def _duplicate(self, client_order_id: str) -> DuplicateClientOrderId:
        return DuplicateClientOrderId(
            f"An order with client id {client_order_id} already exists; it is never sent twice. "
            "Use a new order (or 'send again' once it is known not to have been placed)."
        )

    async def _submit_validated(self, request: OrderRequest) -> Order:
        self._check_can_trade(request)
        # The placement runs as its own task: cancelling the caller (a closed window) must not stop
        # it between sending and journalling the answer.
        cid = request.client_order_id
        task = asyncio.get_running_loop().create_task(self._place(request), name=f"place-{cid}")
        self._tasks.add(task)
        self._placing[cid] = task
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: self._placing.pop(cid, None) if self._placing.get(cid) is t else None)
        return await asyncio.shield(task)

    async def _place(self, request: OrderRequest) -> Order:
        cid = request.client_order_id
        entry = JournalEntry.pending(self.venue_name, request, self._now_ms())
        if not await self.journal.insert_pending(entry):
            raise self._duplicate(cid)
        # Committed: from here on a crash leaves a PENDING row that the next start reconciles.
        self._entries[cid] = entry
        self._publish_order(entry)
        try:
            order = await self.venue.create_order(request)
        except _DEFINITE_REFUSALS as exc:
            return (await self._settle(cid, OrderStatus.REJECTED, self._rejected_sentence(entry, str(exc)))).order()
        except OrderOutcomeUnknown as exc:
            return (await self._unknown(cid, str(exc))).order()
        except asyncio.CancelledError:
            # Cancelled while the request may be on the wire: the next start reconciles the row.
            log.warning("%s: placing %s was cancelled mid-flight; it stays PENDING until reconciled", self.venue_name, cid)
            raise
        except Exception as exc:
            if not isinstance(exc, VenueUnavailable | VenueError):
                log.exception("%s: create_order for %s failed unexpectedly", self.venue_name, cid)
            return (await self._unknown(cid, str(exc) or type(exc).__name__)).order()
        return (await self._apply(cid, order)).order()

    def _rejected_sentence(self, entry: JournalEntry, detail: str) -> str:
        detail = detail.strip() or f"{self.title} rejected the order"
        return f"{self._what(entry)} was rejected: {detail.rstrip('.')}. Nothing was traded."

    @staticmethod
    def _what(entry: JournalEntry) -> str:
        price = f" at {format(entry.price, 'f')}" if entry.price is not None else ""
        return (f"Your {entry.type.value.replace('_', '-')} {entry.side.value} of {format(entry.amount, 'f')} "
                f"{entry.symbol}{price} ({entry.client_order_id})")

    # ------------------------------------------------------------------ journal updates and events

    def _publish_order(self, entry: JournalEntry) -> None:
        self.bus.publish(TOPIC_ORDER_UPDATED, entry.order(), Priority.MEDIUM)

    def _publish_changes(self, before: JournalEntry | None, entry: JournalEntry, changed: bool,
                         fills: list[Fill]) -> None:
        self._entries[entry.client_order_id] = entry
        if changed:
            self._publish_order(entry)
            if entry.status is OrderStatus.REJECTED and (before is None or before.status is not OrderStatus.REJECTED):
                self.bus.publish(TOPIC_ORDER_REJECTED, entry.order(), Priority.HIGH)
        for f in fills:
            self.bus.publish(TOPIC_TRADE_EXECUTED, f, Priority.MEDIUM)

    async def _apply(self, cid: str, order: Order) -> JournalEntry:
        before = self._entries.get(cid)
        if order.status is OrderStatus.REJECTED and not order.reason and before is not None:
            order = replace(order, reason=self._rejected_sentence(before, ""))
        entry, changed, fills = await self.journal.apply_order(cid, order, self._now_ms())
        self._publish_changes(before, entry, changed, fills)
        return entry

    async def _settle(self, cid: str, status: OrderStatus, reason: str, *, not_placed: bool = False) -> JournalEntry:
        before = self._entries.get(cid)
        entry, changed = await self.journal.settle_unknown(cid, status, reason, self._now_ms(), not_placed=not_placed)
        self._publish_changes(before, entry, changed, [])
        return entry

    async def _unknown(self, cid: str, detail: str) -> JournalEntry:
        reason = (f"No definite answer from {self.title} ({detail.rstrip('.')}). Checking whether the order was "
                  "placed; it will not be sent again until that is known.")
        entry = await self._settle(cid, OrderStatus.UNKNOWN, reason)
        if not entry.settled:
            self._reconciler(cid, self._clock() + self.settle_window)
        return entry

    # ------------------------------------------------------------------ reconciliation

    def _reconciler(self, cid: str, deadline: float) -> asyncio.Task[JournalEntry]:
        task = self._reconcilers.get(cid)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._reconcile(cid, deadline), name=f"reconcile-{cid}")
            self._reconcilers[cid] = task
            task.add_done_callback(lambda t, c=cid: self._reconcilers.pop(c, None) if self._reconcilers.get(c) is t
                                   else None)
        return task

    def _backoff(self, attempt: int) -> float:
        cap = min(self.backoff_max, self.backoff_first * (2 ** min(attempt, 30)))
        return self._rng() * cap  # full jitter

    async def _reconcile(self, cid: str, deadline: float) -> JournalEntry:
        """Until the order is known to exist or known not to exist. Never sends anything."""
        attempt = 0
        while True:
            entry = self._entries[cid]
            if entry.settled:
                return entry  # a refresh or cancel_all found it meanwhile
            outcome, value = await self._lookup(entry)
            self.lookups += 1
            if outcome == _Lookup.FOUND:
                assert isinstance(value, Order)
                log.info("%s: order %s reconciled: it exists (%s)", self.venue_name, cid, value.status.value)
                return await self._apply(cid, value)
            now = self._clock()
            if outcome == _Lookup.ABSENT:
                if now >= deadline:
                    log.info("%s: order %s reconciled: not placed", self.venue_name, cid)
                    return await self._settle(cid, OrderStatus.REJECTED, self._not_placed_sentence(entry),
                                              not_placed=True)
                # "Not found" while the request may still be in flight proves nothing: look again.
                delay = min(max(0.0, deadline - now), max(self._backoff(attempt), 0.01))
            else:
                log.info("%s: order %s still unknown (%s); checking again", self.venue_name, cid, value)
                delay = self._backoff(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    def _not_placed_sentence(self, entry: JournalEntry) -> str:
        return (f"{self._what(entry)} was not placed: {self.title} confirmed it has no such order. Nothing was "
                "traded; you can send it again.")

    @staticmethod
    def _is(order: Order, cid: str) -> bool:
        # Gate echoes the id as "t-<id>".
        return order.client_order_id == cid or order.client_order_id.removeprefix("t-") == cid

    async def _lookup(self, entry: JournalEntry) -> tuple[str, Order | str]:
        cid, symbol = entry.client_order_id, entry.symbol
        by_client_id = getattr(self.venue, "fetch_order_by_client_id", None)
        why = f"{self.title} cannot look orders up by client id"
        if by_client_id is not None:
            try:
                order = await by_client_id(cid, symbol)
            except OrderNotFound as exc:
                return _Lookup.ABSENT, str(exc)
            except VenueUnavailable as exc:
                return _Lookup.UNREACHABLE, str(exc)
            except (NotImplementedError, VenueError) as exc:
                why = str(exc) or why  # unsupported or refused: look in the lists instead
            except Exception as exc:
                log.exception("%s: looking up %s failed unexpectedly", self.venue_name, cid)
                why = f"{type(exc).__name__}: {exc}"
            else:
                if not order.client_order_id or self._is(order, cid):
                    return _Lookup.FOUND, order
                why = f"{self.title} answered with another order ({order.client_order_id})"
        try:
            for order in await self.venue.fetch_open_orders(symbol):
                if self._is(order, cid):
                    return _Lookup.FOUND, order
            history = getattr(self.venue, "fetch_closed_orders", None)
            if history is not None:
                for order in await history(symbol):
                    if self._is(order, cid):
                        return _Lookup.FOUND, order
        except VenueUnavailable as exc:
            return _Lookup.UNREACHABLE, str(exc)
        except Exception as exc:
            return _Lookup.INCONCLUSIVE, f"{why}; listing orders failed: {exc}"
        return _Lookup.INCONCLUSIVE, f"{why}, and it is in neither its open orders nor its recent history"

    # ------------------------------------------------------------------ refresh and cancel

    async def refresh(self) -> list[Order]:
        """Poll the venue for the live orders' fills and states; returns the orders that changed."""
        live = [e for e in self._entries.values() if e.status in LIVE or not e.settled]
        changed: list[Order] = []
        for symbol in sorted({e.symbol for e in live}):
            open_orders = await self.venue.fetch_open_orders(symbol)
            by_id = {o.id: o for o in open_orders if o.id}
            by_cid = {o.client_order_id: o for o in open_orders if o.client_order_id}
            for e in [e for e in live if e.symbol == symbol]:
                order = (by_id.get(e.venue_order_id) if e.venue_order_id else None) or by_cid.get(e.client_order_id) \
                    or by_cid.get("t-" + e.client_order_id)
                if order is None:
                    if not e.settled:
                        continue  # absence from open orders proves nothing: its reconciler decides
                    order = await self._fetch(e)
                    if order is None:
                        continue
                after = await self._apply(e.client_order_id, order)
                if after != e:
                    changed.append(after.order())
        return changed

    async def _fetch(self, entry: JournalEntry) -> Order | None:
        try:
            if entry.venue_order_id:
                return await self.venue.fetch_order(entry.venue_order_id, entry.symbol)
            return await self.venue.fetch_order_by_client_id(entry.client_order_id, entry.symbol)
        except OrderNotFound as exc:
            log.warning("%s: live order %s not found on refresh: %s", self.venue_name, entry.client_order_id, exc)
            return None

    def _find(self, order_id: str) -> JournalEntry | None:
        entry = self._entries.get(order_id)
        if entry is None:
            entry = next((e for e in self._entries.values() if e.venue_order_id and e.venue_order_id == order_id), None)
        return entry

    async def cancel(self, order_id: str, symbol: str) -> Order:
        """Cancel by client order id or venue order id. Returns the order as the venue left it."""
        entry = self._find(order_id)
        if entry is None:  # not placed by this terminal (or long ago): the venue decides
            return await self.venue.cancel_order(order_id, symbol)
        cid = entry.client_order_id
        if not entry.settled:
            raise OrderStillUnknown(
                f"Order {cid} is still being checked with {self.title}; cancel it once its state is known."
            )
        if entry.list_id:
            return await self._cancel_list(entry)
        if entry.status.is_final:
            raise self._cannot_cancel(entry)
        if not entry.venue_order_id:
            raise OrderStillUnknown(f"{self.title} has not given order {cid} an id yet; try again in a moment.")
        try:
            order = await self.venue.cancel_order(entry.venue_order_id, entry.symbol)
        except (OrderNotFound, OrderRejected):
            # It ended (filled, or cancelled elsewhere) before the cancel arrived: learn how.
            fresh = await self._fetch(entry)
            if fresh is not None:
                entry = await self._apply(cid, fresh)
            raise self._cannot_cancel(entry) from None
        return (await self._apply(cid, order)).order()

    async def _cancel_list(self, entry: JournalEntry) -> Order:
        """Cancel the OCO list `entry` is a leg of: both legs, as the venue does for a cancel of either."""
        legs = self.list_legs(entry.list_id)
        if any(not leg.settled for leg in legs):
            raise OrderStillUnknown(f"OCO list {entry.list_id} is still being checked with {self.title}; cancel it "
                                    "once its state is known.")
        if all(leg.status.is_final for leg in legs):
            raise self._cannot_cancel(entry)
        venue: Any = self.venue
        cancel_list = getattr(venue, "cancel_order_list", None)
        refused = False
        try:
            if cancel_list is not None:
                result: OrderList = await cancel_list(entry.list_id, entry.symbol)
                shown = list(result.orders)
            else:  # a venue cancelling a list through any of its legs
                live = next(leg for leg in legs if not leg.status.is_final and leg.venue_order_id)
                shown = [await venue.cancel_order(live.venue_order_id, live.symbol)]
        except (OrderNotFound, OrderRejected):
            shown, refused = [], True  # it ended (filled, or cancelled elsewhere) before the cancel arrived
        for leg in legs:
            order = next((o for o in shown if o.client_order_id == leg.client_order_id
                          or (o.id and o.id == leg.venue_order_id)), None)
            if order is None and not self._entries[leg.client_order_id].status.is_final:
                order = await self._fetch(self._entries[leg.client_order_id])
            if order is not None:
                await self._apply(leg.client_order_id, replace(order, client_order_id=leg.client_order_id))
        after = self._entries[entry.client_order_id]
        if refused:
            raise self._cannot_cancel(after)
        return after.order()

    def _cannot_cancel(self, entry: JournalEntry) -> CannotCancel:
        state = entry.status.value.replace("_", " ")
        return CannotCancel(f"Order {entry.client_order_id} is already {state} on {self.title}; there is nothing to cancel.")

    async def cancel_all(self, symbol: str | None = None) -> list[Order]:
        """Cancel every open order of this venue (for `symbol`), the terminal's and any other on the account.

        Tries them all; returns those cancelled. Raises VenueUnavailable after trying, if some could not be."""
        targets: dict[str, tuple[str, str]] = {}  # venue order id -> (symbol, our client id or "")
        symbols = {symbol} if symbol is not None else {e.symbol for e in self._entries.values()
                                                        if e.status in LIVE or not e.settled}
        for sym in sorted(symbols):
            for order in await self.venue.fetch_open_orders(sym):
                entry = self._entries.get(order.client_order_id) or self._entries.get(
                    order.client_order_id.removeprefix("t-"))
                if entry is not None:
                    await self._apply(entry.client_order_id, order)  # may settle an UNKNOWN one
                targets[order.id] = (order.symbol, entry.client_order_id if entry is not None else "")
        for e in self._entries.values():
            if e.status in LIVE and e.venue_order_id and (symbol is None or e.symbol == symbol):
                targets.setdefault(e.venue_order_id, (e.symbol, e.client_order_id))
        done: list[Order] = []
        failed: list[str] = []
        for order_id, (sym, cid) in targets.items():
            try:
                done.append(await self.cancel(cid or order_id, sym))
            except (CannotCancel, OrderNotFound, OrderRejected):
                continue  # it ended before the cancel arrived
            except VenueError as exc:
                failed.append(f"{cid or order_id}: {exc}")
        if failed:
            raise VenueUnavailable(
                f"Cancelled {len(done)} of {len(done) + len(failed)} orders on {self.title}; "
                f"{len(failed)} could not be cancelled ({'; '.join(failed)[:300]}). Try again."
            )
        return done


__all__ = [
    "CannotCancel",
    "DuplicateClientOrderId",
    "JournalEntry",
    "OrderService",
    "OrderServiceError",
    "OcoValidator",
    "OrderStillUnknown",
    "PlaceOrder",
    "TOPIC_ORDER_REJECTED",
    "TOPIC_ORDER_UPDATED",
    "TOPIC_TRADE_EXECUTED",
    "TradingDisabled",
    "Validator",
    "new_client_order_id",
]

