"""The system tray icon: show or hide the window, a line of status, quit; and balloon messages.

Qt decides once per process whether a tray exists (a StatusNotifierWatcher on the session
bus, or an X11 system tray). Without one, `Tray.available` is False, the window never
hides itself on close (it could not be brought back), and desktop notifications fall
back to nothing but the outbox's record.

The balloon (`show_message`) is the desktop channel's fallback when no freedesktop
notification server answers; with a StatusNotifierWatcher, Qt itself sends it as a
freedesktop `Notify` call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QFont, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

from ui import theme

log = logging.getLogger(__name__)
ICON_FILE = Path(__file__).with_name("meridian.svg")  # package data; the installers render theirs from it


def app_icon() -> QIcon:
    """The app's icon: the packaged SVG, or a drawn stand-in when it is missing."""
    if ICON_FILE.is_file():
        return QIcon(str(ICON_FILE))
    pixmap = QPixmap(64, 64)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(theme.ACCENT if hasattr(theme, "ACCENT") else "#2962ff"))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawRoundedRect(4, 4, 56, 56, 12, 12)
    painter.setPen(QColor("#ffffff"))
    painter.setFont(QFont("DejaVu Sans", 30, QFont.Weight.Bold))
    painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, "M")
    painter.end()
    return QIcon(pixmap)


class Tray(QObject):
    """Owns the QSystemTrayIcon and its menu; `status()` gives the status line on each open."""

    quitRequested = Signal()
    messageClicked = Signal()

    def __init__(self, window: QWidget, status: Callable[[], str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.window = window
        self._status = status
        self.available = QSystemTrayIcon.isSystemTrayAvailable()
        self.icon = QSystemTrayIcon(app_icon(), self)
        self.icon.setToolTip("Meridian Terminal")
        self.menu = QMenu()
        self.status_action = QAction("", self.menu)
        self.status_action.setEnabled(False)
        self.toggle_action = QAction("Hide window", self.menu)
        self.toggle_action.triggered.connect(self.toggle_window)
        self.quit_action = QAction("Quit Meridian", self.menu)
        self.quit_action.triggered.connect(self.quitRequested.emit)
        self.menu.addAction(self.status_action)
        self.menu.addSeparator()
        self.menu.addAction(self.toggle_action)
        self.menu.addSeparator()
        self.menu.addAction(self.quit_action)
        self.menu.aboutToShow.connect(self.refresh)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._activated)
        self.icon.messageClicked.connect(self._message_clicked)
        self.messages: list[tuple[str, str]] = []  # what was shown this run (for tests and the log)
        self.timer = QTimer(self)
        self.timer.setInterval(2000)
        self.timer.timeout.connect(self.refresh)
        if self.available:
            self.icon.show()
            self.timer.start()
        self.refresh()

    def refresh(self) -> None:
        text = self._status()
        self.status_action.setText(text)
        self.icon.setToolTip(f"Meridian Terminal\n{text}")
        self.toggle_action.setText("Hide window" if self.window.isVisible() else "Show window")

    def toggle_window(self) -> None:
        if self.window.isVisible():
            self.window.hide()
        else:
            self.bring_up()
        self.refresh()

    def bring_up(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self.toggle_window()

    def _message_clicked(self) -> None:
        self.bring_up()
        self.messageClicked.emit()

    def show_message(self, title: str, text: str) -> None:
        """A balloon from the tray (the desktop channel's fallback)."""
        self.messages.append((title, text))
        del self.messages[:-50]
        if not self.available:
            raise RuntimeError("no system tray on this desktop to show the message in")
        self.icon.showMessage(title, text, QSystemTrayIcon.MessageIcon.Information, 10_000)

    def hide(self) -> None:
        self.timer.stop()
        self.icon.hide()
