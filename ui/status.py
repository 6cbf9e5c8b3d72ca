"""The status bar: which venue, whether its feed is live, and when the last tick came."""

from __future__ import annotations

import datetime as dt
import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from app.market.feed import ConnectionState
from app.market.state import MarketState
from ui import theme

STATE_COLOURS = {
    ConnectionState.LIVE: theme.UP,
    ConnectionState.CONNECTING: theme.WARN,
    ConnectionState.RECONNECTING: theme.WARN,
    ConnectionState.STALE: theme.WARN,
    ConnectionState.STOPPED: theme.MUTED,
}


class MarketStatusBar(QStatusBar):
    def __init__(self, state: MarketState, venue_title: str, parent: QWidget | None = None, *, paper: bool = False) -> None:
        super().__init__(parent)
        self.state = state
        self.venue_label = QLabel(venue_title)
        self.connection_label = QLabel()
        self.tick_label = QLabel("No tick yet")
        self.paper_label = QLabel("PAPER")
        self.paper_label.setToolTip("Paper trading: live prices, a local account; no order reaches the exchange")
        self.paper_label.setStyleSheet(f"color: #131722; background: {theme.WARN}; font-weight: bold; padding: 0 6px;")
        self.paper_label.setVisible(paper)
        self.addWidget(self.paper_label)
        self.addWidget(self.venue_label)
        self.addWidget(self.connection_label)
        self.addPermanentWidget(self.tick_label)
        self.timer = QTimer(self)
        self.timer.setInterval(250)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    def refresh(self) -> None:
        conn = self.state.connection
        colour = STATE_COLOURS.get(conn.state, theme.MUTED)
        text = conn.state.value.capitalize()
        if conn.state is ConnectionState.RECONNECTING and conn.retry_at is not None:
            wait = conn.retry_at - time.time()
            text = f"Reconnecting in {wait:.0f} s" if wait >= 1 else "Reconnecting…"
        if conn.detail:
            text += f" — {conn.detail}"
        self.connection_label.setText(f'<span style="color:{colour}">●</span> {text}')
        self.connection_label.setToolTip("State of the live price feed")
        if self.state.last_tick_ts:
            market_time = dt.datetime.fromtimestamp(self.state.last_tick_ts / 1000).strftime("%Y-%m-%d %H:%M:%S")
            age = time.time() - self.state.last_tick_wall
            self.tick_label.setText(f"Last tick {market_time}" + (f"  ({age:.0f} s ago)" if age >= 5 else ""))
