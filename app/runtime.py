"""The composition root: builds every service from settings.

The window, headless commands and tests all start the application through
`Runtime`, so they run the same wiring. Nothing here imports Qt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from app.bus import Event, EventBus, Priority
from app.market.candles import CandleArrays, CandleSeries, CandleStore
from app.market.feed import TOPIC_CANDLE, TOPIC_CONNECTION, TOPIC_PRICE, TOPIC_TRADE, ConnectionState, MarketFeed
from app.market.state import MarketState
from app.paths import AppPaths
from app.settings import SimSettings, Settings
from app.store import Store, UiStateRepo
from app.venues import factory
from app.resilience.guard import HEALTH_TOPIC, GuardHealth
from app.domain import ZERO, OrderRequest, OrderStatus, Side
from app.venues.base import OrderRejected, UnknownSymbol, Venue, VenueError
from app.venues.manager import VenueManager
from app.venues.sim import SimConfig

log = logging.getLogger(__name__)


def sim_config(s: SimSettings) -> SimConfig:
    return SimConfig(
        seed=s.seed,
        tick_interval_ms=s.tick_interval_ms,
        history_days=s.history_days,
        replay_file=s.replay_path,
        replay_symbol=s.replay_symbol,
        replay_speed=s.replay_speed,
    )


KEYED_VENUES = ("binance", "gate", "mexc", "mt5")


def _kv_get(conn: Any, key: str) -> str | None:
    row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def _kv_put(conn: Any, key: str, value: str) -> None:
    conn.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                 (key, value))
TOPIC_NOTICE = "app.notice"  # a sentence the window must show (str), whenever it arises


def venue_config(name: str, settings: Settings, credentials: Any = None) -> Any:
    """The venue's configuration from settings; API keys come only from the secret store."""
    if name == "sim":
        return sim_config(settings.sim)
    exchange = getattr(settings.venues, name, None)
    if name in ("binance", "gate", "mexc") and exchange is not None:
        from app.venues.ccxt_venue import ExchangeConfig

        return ExchangeConfig(
            testnet=exchange.testnet,
            rest_url=exchange.rest_url or None,
            ws_url=exchange.ws_url or None,
            api_key=getattr(credentials, "api_key", "") or "",
            secret=getattr(credentials, "secret", "") or "",
            passphrase=getattr(credentials, "passphrase", "") or "",
        )
    if name == "mt5":
        from app.venues.mt5 import MT5Config

        mt5 = settings.venues.mt5
        return MT5Config(
            path=mt5.terminal_path or None,
            login=mt5.login or None,
            password=getattr(credentials, "secret", "") or "",  # the account password lives in the keyring
            server=mt5.server or None,
            poll_interval_ms=mt5.poll_ms,
        )
    return None


class Runtime:
    """Every service of one running application."""

    def __init__(self, settings: Settings, paths: AppPaths, *, venue: Venue | None = None, venue_name: str | None = None,
                 credentials: Any = None, paper: bool | None = None) -> None:
        self.settings = settings
        self.paths = paths
        self.bus = EventBus()
        self.candles = CandleStore()
        self.state = MarketState()
        name = venue_name or settings.venue
        self.paper = settings.paper.enabled if paper is None else paper
        self.venue: Venue = venue or self._build_venue(name, credentials)
        self.manager = VenueManager()
        self.secrets: Any = None  # the SecretStore once the user (or start-up) opened one
        self._insecure_keyring = False  # the OS keyring was probed and is not secure (the keys dialog decides)
        self.orders: Any = None  # app.trading.orders.OrderService once started (needs the store)
        self._orders_task: asyncio.Task[None] | None = None
        from app.trading.risk import RiskChecker, RiskLimits

        self.risk = RiskChecker(RiskLimits.from_settings(settings.risk), self.bus)
        self.health: dict[str, GuardHealth] = {}  # endpoint group -> its breaker, for the health panel
        self.store: Store | None = None
        self.ui_state: UiStateRepo | None = None
        self.markets: dict = {}
        self.watchlist: list[str] = []
        self.notices: list[str] = []  # sentences for the user: settings problems, symbols not listed
        self.feed: MarketFeed | None = None
        self.aggregator: Any = None  # app.market.aggregator.Aggregator once started
        self.provider_feed: Any = None  # app.market.provider_feed.ProviderFeed when it has work
        self.notifier: Any = None  # app.notify.NotificationService once alerts started
        self.alerts: Any = None  # app.alerts.AlertEngine once alerts started
        self.plan: str = "free"  # "pro" once billing says so; gates SMS and more than 20 alerts
        self.billing: Any = None  # app.billing.client.BillingClient when [billing] relay_url is set
        self._payment_subs: list[Any] = []
        self._chart_loads: dict[tuple[str, str], asyncio.Future[CandleSeries]] = {}
        self._resume_from: dict[tuple[str, str], int] = {}  # (symbol, timeframe) -> last candle before a drop
        self._started = False
        self._stopped = False
        self._owns_venue = venue is None  # a venue built here may be rebuilt with the user's keys

    def _build_venue(self, name: str, credentials: Any = None) -> Venue:
        venue = factory.create(name, venue_config(name, self.settings, credentials), bus=self.bus)
        if self.paper:
            from app.trading.paper import PaperVenue

            venue = PaperVenue(venue, {"USDT": Decimal(repr(self.settings.paper.starting_usdt))})
        return venue

    def open_store(self) -> None:
        """Open the SQLite file. Start-up path, before the window shows: small and bounded."""
        self.paths.ensure_dirs()
        self.store = Store.open(self.paths.database_file)
        self.ui_state = UiStateRepo(self.store)

    async def start(self, symbols: Sequence[str] | None = None, *, stream: bool = True, trading: bool = True) -> None:
        """Load markets, seed the watchlist with current tickers and start the live feed.

        `symbols` replaces the watchlist from settings (the `watch` command streams just one)."""
        bus = self.bus
        bus.subscribe(TOPIC_PRICE, self.state.on_price)
        bus.subscribe(TOPIC_CONNECTION, self.state.on_connection)
        bus.subscribe(TOPIC_CONNECTION, self._remember_last_candles)
        bus.subscribe(TOPIC_TRADE, self.candles.on_trade)
        bus.subscribe(TOPIC_CANDLE, self.candles.on_candle)
        bus.subscribe(HEALTH_TOPIC, self._on_health)
        await bus.start()
        await self._attach_credentials()
        self.markets = await self.venue.load_markets()
        self.manager.venues[self.venue.name] = self.venue  # it has just answered: no second check
        if symbols is not None:
            unknown = [s for s in symbols if s not in self.markets]
            if unknown:
                raise UnknownSymbol(f"{self.venue.name} does not list {', '.join(unknown)}. Listed: {', '.join(self.markets)}.")
        wanted = list(symbols) if symbols is not None else list(self.settings.watchlist.symbols)
        self.aggregator = await self._build_aggregator() if symbols is None else None
        # Symbols the venue does not list stay in the watchlist when a market-data provider prices them.
        priced = [s for s in wanted if s not in self.markets and self.aggregator is not None and self.aggregator.serves(s)]
        self.watchlist = [s for s in wanted if s in self.markets or s in priced]
        missing = [s for s in wanted if s not in self.watchlist]
        if missing:
            self.notices.append(
                f"{getattr(self.venue, 'title', self.venue.name)} does not list {', '.join(missing)}, and no "
                "market-data provider prices them; they are left out of the watchlist. Edit [watchlist] symbols "
                "in your settings, or set a provider's key in Settings → API keys."
            )
        if not [s for s in self.watchlist if s in self.markets]:
            self.watchlist = list(self.markets) + priced
        # Show prices at once, before the first streamed tick arrives.
        listed = [s for s in self.watchlist if s in self.markets]
        for ticker in (await self.venue.fetch_tickers(listed)).values():
            bus.publish(TOPIC_PRICE, ticker)
        if stream:
            self.feed = MarketFeed(bus, self.venue, listed, on_reconnect=self.backfill)
            await self.feed.start()
            if self.aggregator is not None and self.aggregator.providers:
                await self._start_provider_feed(listed, priced)
        if self.store is not None and trading:
            self._start_trading()
        self._started = True

    async def load_chart(self, symbol: str, timeframe: str) -> CandleSeries:
        """History for the chart, fetched once per symbol and timeframe; trades keep it live after that.

        Each timeframe is asked of the venue itself rather than aggregated from one-minute candles:
        an exchange serves years of daily candles, but only a day or so of one-minute ones."""
        key = (symbol, timeframe)
        while (series := self.candles.series(symbol, timeframe)) is None:
            pending = self._chart_loads.get(key)
            if pending is None:
                pending = asyncio.ensure_future(self._fetch_history(symbol, timeframe))
                self._chart_loads[key] = pending
                pending.add_done_callback(lambda _f, k=key: self._chart_loads.pop(k, None))
            await asyncio.shield(pending)  # a second chart asking for the same history waits for the first
        return series

    async def _fetch_history(self, symbol: str, timeframe: str) -> CandleSeries:
        if symbol not in self.markets and self.aggregator is not None:
            # A stock, index or forex row: its candles come from the providers, best first.
            got = await self.aggregator.ohlcv(symbol, timeframe)
            return self.candles.load_history(symbol, timeframe, got.value)
        fetch = getattr(self.venue, "fetch_ohlcv_arrays", None)
        data = await fetch(symbol, timeframe) if fetch else await self.venue.fetch_ohlcv(symbol, timeframe)
        return self.candles.load_history(symbol, timeframe, data)

    def _start_trading(self) -> None:
        """The order service reconciles what the last run left unsettled before it enables trading; it
        waits as long as the venue is unreachable, so it runs as a task while the market shows."""
        from app.trading.orders import OrderService

        assert self.store is not None
        self.orders = OrderService(self.venue, self.store, self.bus, validator=self.validate_order,
                                   oco_validator=self.validate_oco, poll_interval=2.0)
        self._orders_task = asyncio.get_running_loop().create_task(self._run_orders(), name="orders-start")

    async def _run_orders(self) -> None:
        try:
            await self.orders.start()
        except Exception as exc:  # the journal stays as it is; trading stays off and the user is told why
            log.exception("the order service could not start")
            self.notices.append(str(exc))
            self.bus.publish(TOPIC_NOTICE, str(exc), Priority.HIGH)

    async def validate_order(self, request: OrderRequest) -> None:
        """The last check before anything is sent: the venue's rules with fresh balances, then the
        user's risk limits. Raises OrderRejected with the sentences the ticket shows."""
        from app.trading.rules import check_order

        market = self.markets.get(request.symbol)
        if market is None:
            raise OrderRejected(f"{getattr(self.venue, 'title', self.venue.name)} does not list {request.symbol}.")
        balances = await self.venue.fetch_balance()
        ticker = self.state.tickers.get(request.symbol)
        reference = None
        if ticker is not None:
            reference = (ticker.ask if request.side is Side.BUY else ticker.bid) or ticker.last
        check = check_order(
            market, side=request.side, type=request.type, amount=request.amount, price=request.price,
            stop_price=request.stop_price, reference_price=reference, balances=balances,
            client_order_id=request.client_order_id, time_in_force=request.time_in_force,
            post_only=request.post_only, venue_title=str(getattr(self.venue, "title", self.venue.name)),
        )
        if not check.ok:
            raise OrderRejected(" ".join(p.message for p in check.problems))
        prices = {s: t.last for s, t in self.state.tickers.items()}
        loss = await self._daily_loss(market.quote, self.risk.equity(balances, prices, market.quote))
        open_orders = sum(1 for e in self.orders.orders() if e.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)) \
            if self.orders is not None else 0
        held = balances.get(market.base)
        self.risk.check(request, market, price=check.price or reference or request.price or ZERO,
                        position_base=held.total if held else ZERO, open_orders=open_orders, daily_loss=loss)

    async def validate_oco(self, request: Any) -> None:
        """An OCO list's last check: its price relations around the last trade and both legs against the
        rules with fresh balances, then the risk limits for the dearer leg, counting the list as two orders."""
        from app.trading.rules import check_oco

        market = self.markets.get(request.symbol)
        if market is None:
            raise OrderRejected(f"{getattr(self.venue, 'title', self.venue.name)} does not list {request.symbol}.")
        balances = await self.venue.fetch_balance()
        ticker = self.state.tickers.get(request.symbol)
        last = ticker.last if ticker is not None else None
        reference = ((ticker.bid if request.side is Side.SELL else ticker.ask) or ticker.last) if ticker else None
        check = check_oco(
            market, side=request.side, amount=request.amount, price=request.price, stop_price=request.stop_price,
            stop_limit_price=request.stop_limit_price, last_price=last, reference_price=reference,
            balances=balances, list_client_id=request.list_client_id, limit_client_id=request.limit_client_id,
            stop_client_id=request.stop_client_id, venue_title=str(getattr(self.venue, "title", self.venue.name)),
        )
        if check.problems:
            raise OrderRejected(" ".join(p.message for p in check.problems))
        prices = {s: t.last for s, t in self.state.tickers.items()}
        loss = await self._daily_loss(market.quote, self.risk.equity(balances, prices, market.quote))
        open_orders = sum(1 for e in self.orders.orders() if e.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)) \
            if self.orders is not None else 0
        held = balances.get(market.base)
        dearer = max(request.price, request.stop_limit_price)
        self.risk.check(request.limit_leg(), market, price=dearer, position_base=held.total if held else ZERO,
                        open_orders=open_orders + 1, daily_loss=loss)  # the list rests as two orders

    async def _daily_loss(self, quote: str, equity: Decimal) -> Decimal:
        """Today's loss in `quote`, with the day's starting value kept in SQLite so a restart does not
        reset the daily-loss limit."""
        key = f"risk.day_start.{self.venue.name}"
        if self.store is not None and not self.risk.day_starts:
            saved = await self.store.run(_kv_get, key)
            if saved:
                self.risk.restore(dict(line.split("=", 1) for line in saved.splitlines() if "=" in line))
        before = dict(self.risk.day_starts)
        loss = self.risk.observe_equity(equity, quote=quote)
        if self.store is not None and self.risk.day_starts != before:
            text = "\n".join(f"{q}={v}" for q, v in self.risk.saved_form().items())
            await self.store.run(_kv_put, key, text)
        return loss

    async def _credentials(self, name: str) -> Any:
        """The user's stored keys for `name`, or None. Opens the OS keyring if it is secure; otherwise the
        keys dialog explains the choice, and public data works without keys meanwhile."""
        if self.secrets is None:
            from app.secrets import KeyringSecretStore, backend_status

            if self._insecure_keyring:  # probed once already: no need to ask D-Bus again for each key
                return None
            status = await asyncio.to_thread(backend_status)
            if not status.secure:
                self._insecure_keyring = True
                return None
            self.secrets = await asyncio.to_thread(KeyringSecretStore)  # it probes D-Bus: never on the loop
        try:
            return await self.secrets.get(name)
        except Exception as exc:  # a locked or broken keyring: say so, carry on with public data
            self.notices.append(f"Could not read the API keys for {factory.TITLES.get(name, name)}: {exc}")
            return None

    async def _attach_credentials(self) -> None:
        name = self.venue.name
        if not self._owns_venue or name not in KEYED_VENUES or getattr(getattr(self.venue, "config", None), "api_key", ""):
            return
        credentials = await self._credentials(name)
        if credentials is None:
            return
        await self.venue.close()
        self.venue = self._build_venue(name, credentials)

    async def _token(self, name: str) -> str | None:
        """A single-value secret (a provider's API key) from the user's secret store, or None."""
        from app.secrets import get_token

        if self.secrets is None:
            await self._credentials(name)  # opens the OS keyring when a secure one exists
        if self.secrets is None:
            return None
        try:
            return await get_token(self.secrets, name)
        except Exception:  # a locked keyring: the provider is skipped, public sources still work
            log.warning("could not read the secret %s from the keyring", name)
            return None

    async def _build_aggregator(self) -> Any:
        """The market-data providers from [marketdata], keys from the keyring, their cache from SQLite."""
        from app.market.aggregator import Aggregator
        from app.market.cache import METADATA, TICKER, MarketDataCache
        from app.market.providers import GUARD_CONFIGS, PROVIDERS, create_providers
        from app.resilience.guard import GuardRegistry

        md = self.settings.marketdata
        enabled = frozenset(n for n in PROVIDERS if getattr(md, n).enabled)
        keys = {n: await self._token(f"marketdata_{n}") for n in sorted(enabled) if PROVIDERS[n].requires_key}
        providers = create_providers(
            keys, guards=GuardRegistry(self.bus, GUARD_CONFIGS), enabled=enabled,
            base_urls={n: getattr(md, n).base_url for n in enabled if getattr(md, n).base_url},
            priorities={n: getattr(md, n).priority for n in enabled},
        )
        cache = MarketDataCache(self.store, ttl={TICKER: float(md.ticker_ttl_s), METADATA: float(md.metadata_ttl_s)})
        try:
            await cache.load()
        except Exception:  # an unreadable cache costs requests, not the start
            log.exception("the market data cache could not be read")
        return Aggregator(providers, cache)

    async def _start_provider_feed(self, listed: list[str], priced: list[str]) -> None:
        from app.market.provider_feed import ProviderFeed

        def venue_down() -> bool:
            guard = getattr(self.venue, "guard", None)
            return guard is not None and guard.health().state == "open"

        self.provider_feed = ProviderFeed(self.bus, self.state, self.aggregator, provider_symbols=priced,
                                          venue_symbols=listed, venue_down=venue_down,
                                          interval=min(15.0, float(self.settings.marketdata.ticker_ttl_s)))
        self.state.provider_symbols.update(priced)
        task = asyncio.get_running_loop().create_task(self.provider_feed.start(), name="provider-feed-start")
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None
                               or log.error("provider prices did not start: %s", t.exception()))

    async def secret(self, name: str) -> str | None:
        """A single-value secret for the notification channels (read at each send, never kept)."""
        return await self._token(name)

    async def _secret_store(self) -> Any:
        """The user's secret store, opening the OS keyring when a secure one exists; None otherwise."""
        if self.secrets is None:
            await self._credentials("billing")
        return self.secrets

    def billing_client(self) -> Any:
        """The billing relay's client when `[billing] relay_url` is set (built once, started by its user).
        The account token lives in the secret store under "billing"; the plan it reports gates SMS and
        the number of active alerts."""
        if self.billing is None and self.settings.billing.relay_url:
            from app.billing.client import BillingClient
            from app.billing.errors import BillingError
            from app.billing.token_store import keyring_token_io
            from app.resilience.guard import GuardRegistry

            async def load() -> Any:
                store = await self._secret_store()
                return None if store is None else await keyring_token_io(store)[0]()

            async def save(value: Any) -> None:
                store = await self._secret_store()
                if store is None:
                    raise BillingError("No secure keyring is open to keep your billing account's token: choose "
                                       "where keys go in Settings → API keys, then create the account again.")
                await keyring_token_io(store)[1](value)

            self.billing = BillingClient(self.settings.billing.relay_url, guard=GuardRegistry(self.bus).get("relay"),
                                         load_token=load, save_token=save, bus=self.bus)
            self.billing.add_listener(lambda account: setattr(self, "plan", account.plan))
        return self.billing

    def _on_payment(self, event: Event) -> None:
        """Payment results from the relay reach the user as notifications (desktop, and Discord if set up)."""
        if self.notifier is None:
            return
        ev = event.payload
        kind = "payment_succeeded" if event.topic == "payment.succeeded" else "payment_failed"
        data = {"amount": ev.amount, "currency": ev.currency, "points": ev.points or None, "plan": ev.plan,
                "reference": ev.reference, "reason": ev.reason or "the card was declined"}
        channels = [c for c in ("desktop", "discord") if c in self.notifier.channels
                    and (c != "discord" or self.settings.notify.discord.enabled)]
        task = asyncio.ensure_future(self.notifier.notify(kind, data, channels, message_id=f"{kind}:{ev.reference}"))
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None
                               or log.error("payment notification not queued: %s", t.exception()))

    def alert_engine(self) -> Any:
        """The alert engine, built on first use (the window's alerts dock needs it before the market
        starts); it evaluates nothing until `start_alerts()` starts it."""
        if self.alerts is None:
            from app.alerts import AlertEngine, AlertRepo, Firing

            async def send(firing: Firing) -> None:
                if self.notifier is not None:
                    await self.notifier.notify(firing.kind, firing.data, firing.alert.channels,
                                               message_id=firing.message_id)

            repo = AlertRepo(self.store) if self.store is not None else None
            self.alerts = AlertEngine(self.bus, repo, send=send, pro=lambda: self.plan == "pro",
                                      known_symbols=lambda: set(self.watchlist))
        return self.alerts

    def channels_ready(self) -> dict[str, str]:
        """Channels that are not set up, each with the sentence saying how to set it up (cheap: no keyring)."""
        n = self.settings.notify
        out: dict[str, str] = {}
        if not n.desktop.enabled:
            out["desktop"] = "Desktop notifications are off: set [notify.desktop] enabled = true."
        if not n.email.host or not n.email.recipients or not n.email.sender:
            out["email"] = ("Email is not set up: fill in [notify.email] host, sender and recipients in the settings "
                            "file; messages wait in the outbox until then.")
        if not n.discord.enabled:
            out["discord"] = ("Discord is off: set [notify.discord] enabled = true and paste the webhook URL in "
                              "Settings → API keys.")
        if not n.sms.enabled:
            out["sms"] = "SMS is off: set up [notify.sms] (Twilio) in the settings file; it needs the Pro plan."
        return out

    async def start_alerts(self, *, channels: Sequence[str] = ("desktop", "email", "discord", "sms"),
                           on_click: Any = None, fallback: Any = None, **notify_options: Any) -> None:
        """The notification service (with its outbox) and the alert engine. The window passes the desktop
        channel's click handler and the tray's balloon as its fallback; headless mode leaves the desktop out."""
        from app.notify import create_notification_service

        assert self.store is not None, "alerts need the data file: call open_store() first"
        self.notifier = create_notification_service(
            self.store, self.settings.notify, self.secret, bus=self.bus, channels=channels,
            sms_allowed=lambda: self.plan == "pro", on_click=on_click, fallback=fallback, **notify_options,
        )
        await self.notifier.start()
        await self.alert_engine().start()
        for topic in ("payment.succeeded", "payment.failed"):
            self._payment_subs.append(self.bus.subscribe(topic, self._on_payment))

    async def sources(self, symbol: str) -> list[Any]:
        """Every exchange's and provider's price for `symbol` (the sources view)."""
        from app.market.sources import gather_sources

        return await gather_sources(symbol, self.manager, self.aggregator)

    def _on_health(self, event: Event) -> None:
        self.health[event.payload.group] = event.payload

    def healths(self) -> list[GuardHealth]:
        """Every guarded service's current state, including healthy ones that never changed state
        (a breaker publishes only its changes), with live call counts."""
        seen = dict(self.health)
        for venue in self.manager.venues.values():
            guard = getattr(venue, "guard", None)
            if guard is not None:
                seen[guard.group] = guard.health()
        guard = getattr(self.venue, "guard", None)
        if guard is not None:
            seen[guard.group] = guard.health()
        for provider in getattr(self.aggregator, "providers", ()):
            seen[provider.guard.group] = provider.guard.health()
        return [seen[k] for k in sorted(seen)]

    async def add_venue(self, name: str) -> None:
        """Connect another venue for the comparison (public data; keys if the user stored some)."""
        if name in self.manager.venues:
            raise VenueError(f"{factory.TITLES.get(name, name)} is already connected.")
        credentials = await self._credentials(name) if name in KEYED_VENUES else None
        venue = factory.create(name, venue_config(name, self.settings, credentials), bus=self.bus)
        await self.manager.add(venue)

    def _remember_last_candles(self, event: Event) -> None:
        """When the stream drops, note each base series' last candle: the backfill must refetch from
        there, not from whatever candle the new connection's first trades have opened meanwhile (it
        runs beside the stream, so those trades can reach the series first)."""
        if event.payload.state not in (ConnectionState.RECONNECTING, ConnectionState.STALE):
            return
        for symbol in self.candles.symbols():
            for timeframe in self.candles.timeframes(symbol):
                series = self.candles.series(symbol, timeframe)
                last = series.last() if series is not None and not self.candles.is_derived(symbol, timeframe) else None
                if last is not None:
                    self._resume_from.setdefault((symbol, timeframe), int(last[0]))

    async def backfill(self) -> None:
        """After a reconnect, fetch the candles missed while the stream was down, so the chart has
        no gap and no duplicate. The base timeframe is refetched from its last candle before the
        drop (which may have changed) and the derived timeframes are rebuilt from it."""
        fetch = getattr(self.venue, "fetch_ohlcv_arrays", None)
        if fetch is None:
            return
        for symbol in self.candles.symbols():
            for timeframe in self.candles.timeframes(symbol):
                if self.candles.is_derived(symbol, timeframe):
                    continue  # rebuilt from the base when the base is reloaded
                series = self.candles.series(symbol, timeframe)
                last = series.last() if series is not None else None
                if series is None or last is None:
                    continue
                since = min(self._resume_from.pop((symbol, timeframe), int(last[0])), int(last[0]))
                fresh = await fetch(symbol, timeframe, since=since)
                if not len(fresh):
                    continue
                old = series.arrays()
                keep = old.ts < fresh.ts[0]
                merged = CandleArrays(*(np.concatenate((getattr(old, f)[keep], getattr(fresh, f)))
                                        for f in ("ts", "open", "high", "low", "close", "volume")))
                self.candles.load_history(symbol, timeframe, merged)
                log.info("%s: backfilled %d %s candle(s) of %s after a reconnect",
                         self.venue.name, len(fresh), timeframe, symbol)

    async def stop(self) -> None:
        """Stop everything started; safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        if self.orders is not None:
            await self.orders.close()
        if self._orders_task is not None and not self._orders_task.done():
            self._orders_task.cancel()
        if self.billing is not None:
            await self.billing.close()
        if self.alerts is not None:
            await self.alerts.stop()
        if self.notifier is not None:
            result = await self.notifier.flush(timeout=5.0)  # what is due goes out before the store closes
            log.info("notifications at shutdown: %s", result.sentence())
            await self.notifier.stop()
        if self.feed is not None:
            await self.feed.stop()
        if self.provider_feed is not None:
            await self.provider_feed.stop()
        if self.aggregator is not None:
            await self.aggregator.close()
        await self.venue.close()
        for name in list(self.manager.venues):
            if self.manager.venues[name] is not self.venue:
                await self.manager.remove(name)
        await self.bus.stop(drain=True)
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None
