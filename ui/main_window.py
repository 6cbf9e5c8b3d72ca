"""The main window: chart in the centre, watchlist dock, status bar, saved layout."""

from __future__ import annotations

import asyncio
import logging

import shiboken6

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QDockWidget, QFrame, QHBoxLayout, QLabel, QMainWindow, QScrollArea, QToolButton, QVBoxLayout, QWidget

from app import __version__
from app.domain import OrderStatus, OrderType, Side
from app.runtime import TOPIC_NOTICE, Runtime
from ui.chart import ChartWidget
from ui.compare import ComparePanel
from ui.alerts_view import AlertsPanel
from ui.billing_panel import BillingPanel
from ui.chart_alerts import ChartAlerts
from ui.notify_dialog import NotificationsDialog
from ui.outbox_view import OutboxPanel
from ui.sources import SourcesPanel
from ui.tray import Tray, app_icon
from ui.health import HealthView
from ui.keys_dialog import ApiKeysDialog
from ui.orders_view import BalancesPanel, FillsPanel, OrdersPanel
from ui.ticket import OrderTicket
from ui.status import MarketStatusBar
from ui.watchlist import WatchlistModel, WatchlistView

log = logging.getLogger(__name__)

# Bump when docks are added or renamed, so an old saved layout is not applied to a new set of docks.
LAYOUT_VERSION = 8
KEY_GEOMETRY = "window.geometry"
KEY_STATE = "window.state"
KEY_SYMBOL = "chart.symbol"
KEY_TIMEFRAME = "chart.timeframe"


class NoticeBar(QFrame):
    """Sentences the user should read (a settings file that was set aside, symbols left out)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("notice")
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 6, 6, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.label, 1)
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        row.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.messages: list[str] = []
        self.hide()

    def add(self, message: str) -> None:
        self.messages.append(message)
        self.label.setText("\n".join(self.messages))
        self.show()


class MainWindow(QMainWindow):
    closed = Signal()

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        refresh_hz = runtime.settings.ui.refresh_hz
        self.setWindowTitle(f"Meridian Terminal — {getattr(runtime.venue, 'title', runtime.venue.name)}")
        self.resize(1400, 860)

        self.notice = NoticeBar()
        self.chart = ChartWidget(runtime.load_chart, refresh_hz)
        self.chart.timeframe = runtime.settings.ui.timeframe  # a saved layout may override it
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.notice)
        column.addWidget(self.chart, 1)
        self.setCentralWidget(central)

        self.watchlist_model = WatchlistModel(runtime.state, self)
        self.watchlist = WatchlistView(self.watchlist_model, refresh_hz)
        self.watchlist.symbolActivated.connect(self.show_symbol)
        self.watchlist.priceChosen.connect(self._price_chosen)
        self.watchlist_dock = QDockWidget("Watchlist", self)
        self.watchlist_dock.setObjectName("dock.watchlist")  # saveState() keys docks by object name
        self.watchlist_dock.setWidget(self.watchlist)
        self.watchlist_dock.setMinimumWidth(300)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.watchlist_dock)
        self.resizeDocks([self.watchlist_dock], [500], Qt.Orientation.Horizontal)

        self.compare = ComparePanel(runtime)
        self.compare_dock = self._dock("Compare venues", "dock.compare", self.compare, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.sources = SourcesPanel(runtime)
        self.sources_dock = self._dock("Sources", "dock.sources", self.sources, Qt.DockWidgetArea.BottomDockWidgetArea)
        engine = runtime.alert_engine()
        self.alerts_panel = AlertsPanel(engine, lambda: list(runtime.watchlist), runtime.channels_ready)
        self.alerts_dock = self._dock("Alerts", "dock.alerts", self.alerts_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.chart_alerts = ChartAlerts(self.chart, engine)
        self.chart_alerts.alertRequested.connect(self.alerts_panel.create)
        self.chart_alerts.formRequested.connect(self.open_alert_form)
        self.chart_alerts.message.connect(self.notice.add)
        self.watchlist.alertRequested.connect(self.open_alert_form)
        self.watchlist.widthWanted.connect(
            lambda w: self.resizeDocks([self.watchlist_dock], [min(w, self.width() // 2)], Qt.Orientation.Horizontal))
        self.billing = BillingPanel(runtime.billing_client())
        billing_scroll = QScrollArea()  # its forms are tall: scrolled, they never force the window's height up
        billing_scroll.setWidget(self.billing)
        billing_scroll.setWidgetResizable(True)
        billing_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.billing_dock = self._dock("Billing", "dock.billing", billing_scroll, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.outbox = OutboxPanel(runtime)
        self.outbox_dock = self._dock("Undelivered notifications", "dock.outbox", self.outbox,
                                      Qt.DockWidgetArea.BottomDockWidgetArea)
        self.health = HealthView(runtime.healths)
        self.health_dock = self._dock("Connection health", "dock.health", self.health, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.orders_panel = OrdersPanel(runtime)
        self.orders_dock = self._dock("Orders", "dock.orders", self.orders_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.fills = FillsPanel(runtime)
        self.fills_dock = self._dock("Trades", "dock.fills", self.fills, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.balances = BalancesPanel(runtime)
        self.balances_dock = self._dock("Balances", "dock.balances", self.balances, Qt.DockWidgetArea.BottomDockWidgetArea)
        for dock in (self.fills_dock, self.balances_dock, self.alerts_dock, self.compare_dock, self.sources_dock,
                     self.outbox_dock, self.health_dock, self.billing_dock):
            self.tabifyDockWidget(self.orders_dock, dock)
        self.orders_dock.raise_()
        self.ticket = OrderTicket(runtime)
        self.ticket_dock = self._dock("Order ticket", "dock.ticket", self.ticket, Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([self.ticket_dock], [300], Qt.Orientation.Horizontal)
        self.chart.priceClicked.connect(self.ticket.set_price)
        self.marks_timer = QTimer(self)
        self.marks_timer.setInterval(500)
        self.marks_timer.timeout.connect(self.refresh_chart_marks)
        self.marks_timer.start()
        ui = runtime.settings.ui
        for key, side in ((ui.buy_hotkey, "buy"), (ui.sell_hotkey, "sell")):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.activated.connect(lambda s=side: self.open_ticket(s))
        self.resizeDocks([self.compare_dock], [170], Qt.Orientation.Vertical)

        self.status = MarketStatusBar(runtime.state, getattr(runtime.venue, "title", runtime.venue.name),
                                      paper=bool(getattr(runtime.venue, "paper", False)))
        self.setStatusBar(self.status)
        self._build_menus()
        self.setWindowIcon(app_icon())
        self.tray = Tray(self, self._tray_status, self)
        self.tray.quitRequested.connect(self.quit)
        self._quitting = False
        self._told_about_tray = False
        self._default_state = self.saveState(LAYOUT_VERSION)
        self._saved = False
        self._start_symbol = ""

    def docks(self) -> tuple[QDockWidget, ...]:
        return (self.watchlist_dock, self.ticket_dock, self.orders_dock, self.fills_dock, self.balances_dock,
                self.alerts_dock, self.compare_dock, self.sources_dock, self.outbox_dock, self.health_dock,
                self.billing_dock)

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState() keys docks by object name
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        view = self.menuBar().addMenu("&View")
        for i, dock in enumerate(self.docks(), start=1):
            toggle = dock.toggleViewAction()
            toggle.setShortcut(QKeySequence(f"Ctrl+{i}"))
            view.addAction(toggle)
        view.addSeparator()
        reset = QAction("Reset layout", self)
        reset.triggered.connect(self.reset_layout)
        view.addAction(reset)
        settings_menu = self.menuBar().addMenu("&Settings")
        keys = QAction("API keys…", self)
        keys.triggered.connect(self.open_keys_dialog)
        settings_menu.addAction(keys)
        notifications = QAction("Notifications…", self)
        notifications.triggered.connect(self.open_notifications_dialog)
        settings_menu.addAction(notifications)
        help_menu = self.menuBar().addMenu("&Help")
        about = QAction(f"Meridian Terminal {__version__}", self)
        about.setEnabled(False)
        help_menu.addAction(about)

    def open_notifications_dialog(self) -> NotificationsDialog:
        dialog = NotificationsDialog(self.runtime, self)
        dialog.open()
        self.notifications_dialog = dialog
        return dialog

    def open_keys_dialog(self) -> ApiKeysDialog:
        dialog = ApiKeysDialog(self.runtime, self)
        dialog.open()  # window-modal without a nested event loop (exec() would re-enter asyncio)
        self.keys_dialog = dialog
        return dialog

    # -- layout persistence ---------------------------------------------------------

    def restore_layout(self) -> None:
        """Apply the saved geometry, docks, symbol and timeframe (start-up, before the loop is busy)."""
        repo = self.runtime.ui_state
        if repo is None:
            return
        geometry = repo.get_sync(KEY_GEOMETRY)
        if geometry:
            self.restoreGeometry(QByteArray(geometry))
        state = repo.get_sync(KEY_STATE)
        if state:
            self.restoreState(QByteArray(state), LAYOUT_VERSION)
        symbol = repo.get_sync(KEY_SYMBOL)
        self._start_symbol = symbol.decode() if symbol else ""
        timeframe = repo.get_sync(KEY_TIMEFRAME)
        if timeframe:
            self.chart.timeframe = timeframe.decode()

    def save_layout(self) -> None:
        repo = self.runtime.ui_state
        if repo is None:
            return
        repo.put_sync(KEY_GEOMETRY, bytes(self.saveGeometry().data()))
        repo.put_sync(KEY_STATE, bytes(self.saveState(LAYOUT_VERSION).data()))
        if self.chart.symbol:
            repo.put_sync(KEY_SYMBOL, self.chart.symbol.encode())
        repo.put_sync(KEY_TIMEFRAME, self.chart.timeframe.encode())

    def reset_layout(self) -> None:
        self.restoreState(self._default_state, LAYOUT_VERSION)
        for dock in self.docks():
            dock.show()

    # -- tray and notifications ---------------------------------------------------------

    def _tray_status(self) -> str:
        rt = self.runtime
        venue = getattr(rt.venue, "title", rt.venue.name)
        state = rt.state.connection.state.value
        alerts = sum(1 for a in rt.alerts.alerts if a.active) if rt.alerts is not None else 0
        return f"{venue} · {state} · {alerts} active alert(s)"

    def _balloon(self, title: str, text: str) -> None:
        """The desktop channel's fallback when no notification server answers."""
        self.tray.show_message(title, text)

    def notification_clicked(self, target) -> None:  # noqa: ANN001 - app.notify.Target | None
        """A click on a notification: the window comes up at what it was about."""
        self.tray.bring_up()
        if target is None:
            return
        if target.symbol and target.symbol in self.runtime.watchlist:
            self.show_symbol(target.symbol)
        if target.kind == "order":
            self.orders_dock.show()
            self.orders_dock.raise_()
        elif target.kind == "billing":
            self.billing_dock.show()
            self.billing_dock.raise_()

    def open_alert_form(self, symbol: str, price, kind=None) -> None:  # noqa: ANN001 - Decimal | None, AlertKind
        """The watchlist's "Alert at this price…" and the chart's "New alert at …": the form, filled in."""
        self.alerts_dock.show()
        self.alerts_dock.raise_()
        self.alerts_panel.prefill(symbol, price, kind)

    def quit(self) -> None:
        """Quit for real (the tray's Quit), even when closing would only hide the window."""
        self._quitting = True
        self.tray.bring_up()
        self.close()

    async def _start_alerts(self) -> None:
        if self.runtime.store is None:
            return
        try:
            await self.runtime.start_alerts(on_click=self.notification_clicked, fallback=self._balloon)
        except Exception as exc:  # the market still works; the user learns why alerts do not
            log.exception("alerts could not start")
            self.notice.add(f"Alerts and notifications could not start: {exc}")
            return
        self.outbox.attach()
        if self.runtime.billing is not None:
            self._billing_task = asyncio.ensure_future(self.billing.start())

    # -- running ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the market and fill the window. Failures become a sentence in the window."""
        for message in self.runtime.notices:
            self.notice.add(message)
        # Sentences that arise later (the order service failing to start, say) reach the bar too.
        self.runtime.bus.subscribe(TOPIC_NOTICE, lambda e: shiboken6.isValid(self.notice) and self.notice.add(e.payload))
        try:
            await self.runtime.start()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("the market could not start")
            self.notice.add(f"The market could not start: {exc}")
            raise
        for message in self.runtime.notices[len(self.notice.messages):]:
            self.notice.add(message)
        await self._start_alerts()
        self.watchlist_model.set_symbols(self.runtime.watchlist, self.runtime.markets)
        symbol = self._start_symbol if self._start_symbol in self.runtime.watchlist else self.runtime.watchlist[0]
        self.show_symbol(symbol)
        if not self.ticket.symbol:  # the first row was a stock: the ticket opens on the first tradable one
            tradable = [s for s in self.runtime.watchlist if s in self.runtime.markets]
            if tradable:
                self.ticket.set_symbol(tradable[0])

    def refresh_chart_marks(self) -> None:
        """Open orders and this session's fills of the charted symbol, drawn on the chart."""
        orders = self.runtime.orders
        symbol = self.chart.symbol
        if orders is None or not symbol:
            return
        live = [e for e in orders.orders() if e.symbol == symbol and e.price is not None
                and e.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING, OrderStatus.UNKNOWN)]

        def line(e) -> tuple[str, float, bool, str]:  # noqa: ANN001 - a journal entry
            # A stop order waits at its trigger, not at the limit it will be placed with.
            at = e.stop_price if e.type is OrderType.STOP_LIMIT and e.stop_price is not None else e.price
            tag = " · OCO" if getattr(e, "list_id", "") else ""
            return e.client_order_id, float(at), e.side is Side.BUY, f"{e.side.value} {e.amount - e.filled:f}{tag}"

        self.chart.set_orders([line(e) for e in live])
        self.chart.set_fills([(f.ts / 1000, float(f.price), f.side is Side.BUY)
                              for f in self.fills.model.rows if f.symbol == symbol])

    def open_ticket(self, side: str) -> None:
        """The buy/sell hotkeys: show the ticket on that side, ready for an amount."""
        self.ticket_dock.show()
        self.ticket_dock.raise_()
        (self.ticket.buy if side == "buy" else self.ticket.sell).click()
        self.ticket.fill_price_from_market()
        self.ticket.amount.setFocus()

    def _price_chosen(self, symbol: str, price) -> None:  # noqa: ANN001
        self.show_symbol(symbol)
        if symbol in self.runtime.markets:  # a stock priced by a provider cannot be traded on this venue
            self.ticket.set_price(price)

    def show_symbol(self, symbol: str) -> None:
        market = self.runtime.markets.get(symbol)
        ticker = self.runtime.state.tickers.get(symbol)
        decimals = market.price_decimals if market else self.watchlist_model._decimals(symbol, ticker) if ticker else 2
        self.watchlist.select_symbol(symbol)
        self.chart.set_symbol(symbol, decimals)
        self.chart_alerts.refresh()
        self.compare.set_symbol(symbol, decimals)
        self.sources.set_symbol(symbol, decimals)
        if market is not None:  # the ticket keeps the last tradable symbol; AAPL is only watched here
            self.ticket.set_symbol(symbol)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt API)
        if (not self._quitting and self.runtime.settings.notify.desktop.minimise_to_tray and self.tray.available):
            event.ignore()  # alerts keep running; the tray brings the window back
            self.hide()
            if not self._told_about_tray:
                self._told_about_tray = True
                self.tray.show_message("Meridian is still running",
                                       "Alerts stay on. Use the tray icon to show the window or quit.")
            return
        if not self._saved:
            try:
                self.save_layout()
            except Exception:  # a failing disk must not stop the window from closing
                log.exception("could not save the window layout")
            self._saved = True
        self.chart_alerts.shutdown()
        self.alerts_panel.shutdown()
        self.chart.shutdown()
        self.compare.shutdown()
        self.sources.shutdown()
        self.outbox.shutdown()
        self.tray.hide()
        self.ticket.shutdown()
        self.balances.shutdown()
        self.fills.shutdown()
        self.orders_panel.timer.stop()
        self.marks_timer.stop()
        self.health.timer.stop()
        self.watchlist.timer.stop()
        self.status.timer.stop()
        super().closeEvent(event)
        self.closed.emit()
