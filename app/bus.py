"""The in-process event bus: topics, priorities, per-handler isolation, conflation.

Everything that happens in the terminal (a price tick, an order update, a failed
payment, a breaker opening) is published here and fanned out to whoever
subscribed. The bus runs on the asyncio loop, which inside the desktop app is the
Qt loop (qasync), so the design follows from three constraints:

* Publishing must never block or await: producers are websocket readers, venue
  callbacks and UI slots. `publish` only appends to a deque.
* Urgent events must overtake market data: a payment failure or a risk breach
  queued behind 50,000 ticks is useless. There is one queue per `Priority`, and
  the dispatcher always empties HIGH before MEDIUM before LOW.
* Market data may be dropped, nothing else may: under load only the newest
  ticker per (venue, symbol) matters, so `price.updated` is conflated while it
  waits in the queue. Orders, fills and payments are never dropped.

The dispatcher handles events in batches and yields to the loop after a small
time budget, so a burst of ticks cannot freeze the window. A handler that
raises or hangs is logged and recorded in `dead_letters`; it never stops
delivery to the other handlers or of later events.

Threading: `publish` must be called on the loop thread (it is not locked);
worker threads use `publish_threadsafe`.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, TypeAlias

__all__ = [
    "DEFAULT_CONFLATION",
    "DEFAULT_PRIORITIES",
    "BusStats",
    "DeadLetter",
    "Event",
    "EventBus",
    "Handler",
    "KeyFn",
    "Priority",
    "Subscription",
    "default_priority",
    "ticker_key",
]

_log = logging.getLogger(__name__)


class Priority(enum.IntEnum):
    """Dispatch order between queued events; a lower value is dispatched first."""

    HIGH = 0
    MEDIUM = 1
    LOW = 2


@dataclass(frozen=True, slots=True)
class Event:
    """One published fact. Frozen, like its payloads, because several handlers share it."""

    topic: str
    payload: Any
    priority: Priority
    id: str  # unique within the process: "<bus prefix>-<sequence>"
    ts: float  # time.time() at publish; a conflated event carries its newest publish time


SyncHandler: TypeAlias = Callable[[Event], None]
AsyncHandler: TypeAlias = Callable[[Event], Awaitable[None]]
Handler: TypeAlias = SyncHandler | AsyncHandler
KeyFn: TypeAlias = Callable[[Any], Hashable | None]
"""Conflation key of a payload; `None` means "do not conflate this one"."""


DEFAULT_PRIORITIES: Final[dict[str, Priority]] = {
    # Money or risk is at stake and the user must hear about it now.
    "payment.failed": Priority.HIGH,
    "payment.error": Priority.HIGH,
    "risk.limit.exceeded": Priority.HIGH,
    "order.rejected": Priority.HIGH,
    # State the user acted on: must arrive promptly and in order, but may wait for the above.
    "payment.succeeded": Priority.HIGH,
    "payment.refunded": Priority.HIGH,
    "points.awarded": Priority.MEDIUM,
    "order.*": Priority.MEDIUM,
    "fill.*": Priority.MEDIUM,
    "trade.executed": Priority.MEDIUM,
    # Market data and bookkeeping: plentiful, and the next one supersedes it.
    "price.updated": Priority.LOW,
    "market.trade": Priority.LOW,
    "analytics.*": Priority.LOW,
}
"""Default priority per topic pattern (exact topic, `prefix.*`, or `*`).

An exact topic wins over any wildcard, a longer prefix over a shorter one, and
anything unmatched is LOW. Extend it before building the bus (or pass
`priorities=` to `EventBus`): each bus copies the table when it is built."""


def ticker_key(payload: Any) -> Hashable | None:
    """Conflation key of a `Ticker`: the same symbol on two venues is two prices."""
    try:
        return (payload.venue, payload.symbol)
    except AttributeError:
        symbol = getattr(payload, "symbol", None)
        if symbol is None:
            return None  # not a ticker-like payload: deliver it rather than guess
        return (getattr(payload, "venue", None), symbol)


DEFAULT_CONFLATION: Final[dict[str, KeyFn]] = {"price.updated": ticker_key}
"""Topics conflated by default, with their key function. `EventBus(conflate=...)`
merges its argument over this; map a topic to `None` to turn conflation off."""


def _check_pattern(pattern: str) -> None:
    """Reject patterns we would silently never match, such as `order*` or `*.updated`."""
    if not pattern:
        raise ValueError("a topic cannot be empty")
    star = pattern.find("*")
    if star != -1 and not (pattern == "*" or (star == len(pattern) - 1 and pattern.endswith(".*") and len(pattern) > 2)):
        raise ValueError(f"'{pattern}' is not a topic pattern: use an exact topic, 'prefix.*' or '*'")


def _matches(pattern: str, topic: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return topic.startswith(pattern[:-1])  # keep the dot: "order.*" must not match "orders.x"
    return pattern == topic


def _resolve_priority(table: Mapping[str, Priority], topic: str) -> Priority:
    exact = table.get(topic)
    if exact is not None:
        return exact
    best: Priority = Priority.LOW
    best_len = -1
    for pattern, priority in table.items():
        if pattern == "*":
            length = 0
        elif pattern.endswith(".*") and topic.startswith(pattern[:-1]):
            length = len(pattern)
        else:
            continue
        if length > best_len:
            best, best_len = priority, length
    return best


def default_priority(topic: str) -> Priority:
    """The priority `DEFAULT_PRIORITIES` gives `topic` (what `publish` uses without an override)."""
    return _resolve_priority(DEFAULT_PRIORITIES, topic)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery that failed: which event, which handler, and why (the exception or a TimeoutError)."""

    event: Event
    handler: str
    error: BaseException


@dataclass(frozen=True, slots=True)
class BusStats:
    """A snapshot of the bus counters (events, not handler calls)."""

    published: int
    dispatched: int
    conflated: int  # publishes folded into an event that was still queued
    dead_lettered: int  # failed handler calls, including those evicted from `dead_letters`
    queued: int  # waiting in the three queues now

    def as_dict(self) -> dict[str, int]:
        return {
            "published": self.published,
            "dispatched": self.dispatched,
            "conflated": self.conflated,
            "dead_lettered": self.dead_lettered,
            "queued": self.queued,
        }


def _noop(event: Event) -> None:
    """Stands in for a cancelled handler in dispatch snapshots taken before it was cancelled."""


def _handler_name(handler: Callable[..., Any]) -> str:
    name = getattr(handler, "__qualname__", None) or getattr(type(handler), "__qualname__", repr(handler))
    module = getattr(handler, "__module__", None)
    return f"{module}.{name}" if module else name


def _is_async(handler: Callable[..., Any]) -> bool:
    # iscoroutinefunction unwraps functools.partial; callable objects are checked via __call__.
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None))


class Subscription:
    """A handle to one subscription; `cancel()` (or `bus.unsubscribe(sub)`) ends it.

    Mutable on purpose: the dispatcher calls `_call`, which cancelling swaps for a
    no-op, so a handler cancelled in the middle of a dispatch (even by itself or a
    sibling handler) receives nothing more, without a per-call "still active?" check.
    """

    __slots__ = ("topic", "handler", "name", "is_async", "active", "_call", "_bus")

    def __init__(self, bus: EventBus, topic: str, handler: Handler, is_async: bool) -> None:
        self.topic: str = topic
        self.handler: Handler = handler
        self.name: str = _handler_name(handler)
        self.is_async: bool = is_async
        self.active: bool = True
        self._call: Callable[[Event], Any] = handler
        self._bus: EventBus = bus

    def cancel(self) -> None:
        self._bus.unsubscribe(self)

    def __repr__(self) -> str:
        state = "active" if self.active else "cancelled"
        return f"<Subscription {self.topic!r} -> {self.name} ({state})>"


class _Slot:
    """A queue entry for a conflated topic: publishes for its key replace `event` until dispatch."""

    __slots__ = ("event", "pending", "key")

    def __init__(self, event: Event, pending: dict[Hashable, _Slot], key: Hashable) -> None:
        self.event: Event | None = event  # None: superseded by a slot in a more urgent queue
        self.pending = pending
        self.key = key


# Event's dataclass __init__ goes through object.__setattr__ once per field (it is
# frozen), which costs more than the rest of publish together. The hot path fills
# the slots through their descriptors instead; the check below keeps this in step
# with the class if a field is ever added.
if tuple(f.name for f in fields(Event)) != ("topic", "payload", "priority", "id", "ts"):  # not assert: -O strips it
    raise ImportError("app.bus: Event's fields changed; update the fast constructor in publish()")
_new_object = object.__new__
_set_topic = Event.topic.__set__  # type: ignore[attr-defined]
_set_payload = Event.payload.__set__  # type: ignore[attr-defined]
_set_priority = Event.priority.__set__  # type: ignore[attr-defined]
_set_id = Event.id.__set__  # type: ignore[attr-defined]
_set_ts = Event.ts.__set__  # type: ignore[attr-defined]

_bus_numbers = itertools.count(1)

_TopicInfo: TypeAlias = tuple[Priority, KeyFn | None, dict[Hashable, _Slot] | None]
_Route: TypeAlias = tuple[tuple[Subscription, ...], bool]  # (subscriptions in order, any async?)


class EventBus:
    """Priority queues plus a dispatcher task on the running asyncio loop.

    `conflate` maps topics to key functions and is merged over `DEFAULT_CONFLATION`
    (a value of `None` turns a default off). `priorities` is merged over
    `DEFAULT_PRIORITIES`. `handler_timeout` bounds each call of an async handler
    (`None`: no bound). `batch_budget` (seconds) and `batch_size` (events) bound how
    long the dispatcher keeps the loop before yielding to it.
    """

    def __init__(
        self,
        *,
        conflate: Mapping[str, KeyFn | None] | None = None,
        priorities: Mapping[str, Priority] | None = None,
        dead_letter_capacity: int = 1000,
        handler_timeout: float | None = 5.0,
        batch_budget: float = 0.005,
        batch_size: int = 1000,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if batch_size < 1 or batch_budget <= 0:
            raise ValueError("batch_size and batch_budget must be positive")
        conflation: dict[str, KeyFn | None] = {**DEFAULT_CONFLATION, **(conflate or {})}
        for topic in conflation:
            if "*" in topic:
                raise ValueError(f"conflation needs exact topics, not '{topic}'")
        self._conflation: dict[str, KeyFn] = {t: fn for t, fn in conflation.items() if fn is not None}
        self._priorities: dict[str, Priority] = dict(DEFAULT_PRIORITIES)
        for pattern, priority in (priorities or {}).items():
            _check_pattern(pattern)
            self._priorities[pattern] = Priority(priority)

        self.handler_timeout = handler_timeout
        self.batch_budget = batch_budget
        self.batch_size = batch_size
        self.dead_letters: deque[DeadLetter] = deque(maxlen=dead_letter_capacity)

        self._queues: tuple[deque[Event | _Slot], deque[Event | _Slot], deque[Event | _Slot]] = (
            deque(),
            deque(),
            deque(),
        )
        self._topics: dict[str, _TopicInfo] = {}  # per-topic priority and conflation, resolved once
        self._subs: list[Subscription] = []
        # Per-topic handler snapshot. Always cleared in place, never rebound: the
        # dispatcher holds a local reference to this dict.
        self._routes: dict[str, _Route] = {}

        self._id_prefix = f"b{next(_bus_numbers)}-"
        self._ids = itertools.count(1)
        self._published = 0
        self._dispatched = 0
        self._conflated = 0
        self._dead_lettered = 0

        self._loop = loop
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # `_idle` is the cheap flag publish checks; the asyncio.Events are only touched on
        # the idle <-> busy transitions, never per event.
        self._idle = True
        self._wakeup = asyncio.Event()  # set: there may be work (or a stop request)
        self._idle_event = asyncio.Event()  # set: queues empty and nothing in flight
        self._idle_event.set()

    # ----------------------------------------------------------------- subscriptions

    def subscribe(self, topic: str, handler: Handler) -> Subscription:
        """Call `handler` for each event on `topic` (exact, `prefix.*` or `*`).

        Handlers run in subscription order. An `async def` handler is awaited (with
        `handler_timeout`) before the next handler runs, so order is kept across both kinds.
        """
        _check_pattern(topic)
        if not callable(handler):
            raise TypeError(f"handler for '{topic}' must be callable, got {handler!r}")
        sub = Subscription(self, topic, handler, _is_async(handler))
        self._subs.append(sub)
        self._routes.clear()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to `sub`; idempotent, and safe from inside any handler."""
        if not sub.active or sub._bus is not self:
            return
        sub.active = False
        sub._call = _noop  # snapshots already handed to the dispatcher now skip it
        sub.is_async = False
        try:
            self._subs.remove(sub)
        except ValueError:
            pass
        self._routes.clear()

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subs)

    def _route(self, topic: str) -> _Route:
        subs = tuple(s for s in self._subs if _matches(s.topic, topic))
        route = (subs, any(s.is_async for s in subs))
        self._routes[topic] = route
        return route

    # ------------------------------------------------------------------- publishing

    def _topic_info(self, topic: str) -> _TopicInfo:
        # Runs once per distinct topic, so validation here costs publish nothing.
        if not topic or "*" in topic:
            raise ValueError(f"cannot publish to '{topic}': wildcards are for subscribing")
        key_fn = self._conflation.get(topic)
        info: _TopicInfo = (
            _resolve_priority(self._priorities, topic),
            key_fn,
            {} if key_fn is not None else None,
        )
        self._topics[topic] = info
        return info

    def publish(self, topic: str, payload: Any, priority: Priority | None = None) -> Event:
        """Queue an event and return it; never blocks. Loop thread only.

        Before `start()` events simply wait in the queues. For a conflated topic the
        returned event is not delivered if a later publish for the same key replaces
        it while it waits; handlers then get that later event (its payload, id and ts).
        """
        info = self._topics.get(topic)
        if info is None:
            info = self._topic_info(topic)
        default, key_fn, pending = info
        if priority is None:
            priority = default
        else:
            priority = Priority(priority)  # a plain int would index the queues but mislabel the event

        event = _new_object(Event)
        _set_topic(event, topic)
        _set_payload(event, payload)
        _set_priority(event, priority)
        _set_id(event, self._id_prefix + str(next(self._ids)))
        _set_ts(event, time.time())
        self._published += 1

        if key_fn is None:
            self._queues[priority].append(event)
        else:
            self._enqueue_conflated(event, key_fn, pending)  # type: ignore[arg-type]

        if self._idle:
            self._idle = False
            self._idle_event.clear()
            self._wakeup.set()
        return event

    def _enqueue_conflated(self, event: Event, key_fn: KeyFn, pending: dict[Hashable, _Slot]) -> None:
        try:
            key = key_fn(event.payload)
            slot = pending.get(key) if key is not None else None
        except Exception:
            # A payload the key function cannot handle is delivered, not lost.
            _log.exception("conflation key for '%s' failed; delivering the event unconflated", event.topic)
            self._queues[event.priority].append(event)
            return
        if key is None:
            self._queues[event.priority].append(event)
            return
        if slot is not None:
            self._conflated += 1
            queued = slot.event
            if queued is not None and event.priority >= queued.priority:
                # Keep the queue position, deliver the newest state. (If the newer one
                # asked for a lower priority it still goes out from the more urgent queue.)
                slot.event = event
                return
            slot.event = None  # more urgent than where it waits: move it up a queue
        slot = _Slot(event, pending, key)
        pending[key] = slot
        self._queues[event.priority].append(slot)

    def publish_threadsafe(self, topic: str, payload: Any, priority: Priority | None = None) -> None:
        """`publish` from any thread: the event is queued on the loop thread soon after.

        Raises RuntimeError if the bus has no loop yet (call `start()` or pass `loop=`)
        or the loop is closed.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("the event bus has no loop yet: start() it before publishing from other threads")
        loop.call_soon_threadsafe(self.publish, topic, payload, priority)

    # ------------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the dispatcher on the running loop; events queued before now are delivered."""
        if self.running:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            if not self._loop.is_closed():
                raise RuntimeError("the event bus is bound to another event loop")
            # asyncio.Event binds to the loop that first waits on it: start afresh on the new loop.
            self._wakeup = asyncio.Event()
            self._idle_event = asyncio.Event()
        self._loop = loop
        self._idle = not self._has_work()
        if self._idle:
            self._idle_event.set()
        else:
            self._idle_event.clear()
        self._stopping = False
        self._task = loop.create_task(self._run(), name="event-bus-dispatcher")
        self._task.add_done_callback(self._dispatcher_done)

    @staticmethod
    def _dispatcher_done(task: asyncio.Task[None]) -> None:
        # Handler errors never reach here; this is a bug in the bus itself, and it
        # must be loud because nothing would be delivered any more.
        if not task.cancelled() and task.exception() is not None:
            _log.critical("the event bus dispatcher died; events are no longer delivered", exc_info=task.exception())

    async def stop(self, drain: bool = True) -> None:
        """Stop the dispatcher, first delivering everything queued if `drain`.

        Events published by handlers during the drain are delivered too. Without
        `drain`, queued events stay queued (a later `start()` delivers them) and an
        async handler in flight is cancelled. A bus that never started delivers
        its queue here, in the caller's task, when `drain` is true.
        """
        task = self._task
        if task is None or task.done():
            self._task = None
            if drain and self._has_work():
                self._stopping = True
                await self._run()
            return
        if drain:
            self._stopping = True
            self._wakeup.set()
            await asyncio.shield(task)
        else:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # our caller is being cancelled too: do not swallow that
        self._task = None

    async def drain(self) -> None:
        """Wait until all queues are empty and every event taken from them has been handled."""
        if self._idle_event.is_set() and not self._has_work():
            return
        if not self.running:
            raise RuntimeError("the event bus is not running: start() it before drain()")
        task = self._task
        assert task is not None
        if asyncio.current_task() is task:
            raise RuntimeError("drain() from inside a handler would wait for itself")
        idle = asyncio.ensure_future(self._idle_event.wait())
        try:
            # Also wake if the dispatcher ends (stop(drain=False)), or this would wait forever.
            await asyncio.wait((idle, task), return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
        if not self._idle_event.is_set():
            raise RuntimeError("the event bus stopped before its queues were drained")

    def _has_work(self) -> bool:
        q = self._queues
        return bool(q[0] or q[1] or q[2])

    # ------------------------------------------------------------------ statistics

    @property
    def stats(self) -> BusStats:
        return BusStats(
            published=self._published,
            dispatched=self._dispatched,
            conflated=self._conflated,
            dead_lettered=self._dead_lettered,
            queued=sum(len(q) for q in self._queues),
        )

    # ------------------------------------------------------------------- dispatch

    def _dead_letter(self, event: Event, sub: Subscription, error: BaseException) -> None:
        self._dead_lettered += 1
        self.dead_letters.append(DeadLetter(event, sub.name, error))
        if isinstance(error, TimeoutError):
            _log.error("handler %s took longer than %ss on '%s' (%s)", sub.name, self.handler_timeout, event.topic, event.id)
        else:
            _log.exception("handler %s failed on '%s' (%s)", sub.name, event.topic, event.id, exc_info=error)

    async def _run(self) -> None:
        # Locals instead of attribute lookups: this loop runs once per event.
        high, medium, low = self._queues
        routes = self._routes
        route_for = self._route
        dead_letter = self._dead_letter
        dispatch_mixed = self._dispatch_mixed
        clock = time.perf_counter
        budget = self.batch_budget
        batch_size = self.batch_size
        slot_type = _Slot
        wakeup = self._wakeup
        idle_event = self._idle_event
        try:
            while True:
                if not (high or medium or low):
                    if self._stopping:
                        return
                    self._idle = True
                    idle_event.set()
                    wakeup.clear()
                    await wakeup.wait()
                    continue

                deadline = clock() + budget
                done = 0
                try:
                    while done < batch_size:
                        if high:
                            item = high.popleft()
                        elif medium:
                            item = medium.popleft()
                        elif low:
                            item = low.popleft()
                        else:
                            break
                        if item.__class__ is slot_type:
                            event = item.event  # type: ignore[union-attr]
                            if event is None:
                                continue  # superseded by a copy in a more urgent queue
                            del item.pending[item.key]  # type: ignore[union-attr]
                        else:
                            event = item  # type: ignore[assignment]
                        route = routes.get(event.topic)
                        if route is None:
                            route = route_for(event.topic)
                        subs, has_async = route
                        if has_async:
                            await dispatch_mixed(event, subs)
                        else:
                            for sub in subs:
                                try:
                                    sub._call(event)
                                except Exception as exc:
                                    dead_letter(event, sub, exc)
                        done += 1
                        # The clock is read per event: one slow handler must not hold the
                        # GUI for batch_size events.
                        if clock() >= deadline:
                            break
                finally:
                    self._dispatched += done
                # Let the loop paint and read sockets before the next batch.
                await asyncio.sleep(0)
        finally:
            if not self._has_work():
                self._idle = True
                idle_event.set()

    async def _dispatch_mixed(self, event: Event, subs: tuple[Subscription, ...]) -> None:
        timeout = self.handler_timeout
        for sub in subs:
            try:
                if sub.is_async:
                    # wait_for on a coroutine runs it in this task (3.12+): no Task per call.
                    await asyncio.wait_for(sub._call(event), timeout)
                else:
                    sub._call(event)
            except asyncio.CancelledError as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the dispatcher itself is being stopped
                self._dead_letter(event, sub, exc)  # the handler cancelled something of its own
            except Exception as exc:
                self._dead_letter(event, sub, exc)
