"""The dark theme: one palette for Qt widgets and the same colours for charts."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

BACKGROUND = "#131722"
PANEL = "#1b2030"
BASE = "#161a25"
TEXT = "#d1d4dc"
MUTED = "#7f8796"
GRID = "#2a2e39"
ACCENT = "#2962ff"
UP = "#26a69a"
DOWN = "#ef5350"
WARN = "#f5a623"
CROSSHAIR = "#9598a1"

STYLESHEET = f"""
QMainWindow, QDockWidget {{ background: {BACKGROUND}; color: {TEXT}; }}
QDockWidget::title {{ background: {PANEL}; padding: 4px 8px; color: {MUTED}; }}
QTableView {{ background: {BASE}; alternate-background-color: {PANEL}; gridline-color: {GRID};
              selection-background-color: #2a3553; selection-color: {TEXT}; border: none; }}
QHeaderView::section {{ background: {PANEL}; color: {MUTED}; border: none; border-bottom: 1px solid {GRID};
                        padding: 4px 6px; }}
QStatusBar {{ background: {PANEL}; color: {MUTED}; }}
QStatusBar QLabel {{ padding: 0 8px; }}
QToolButton {{ background: transparent; color: {MUTED}; border: 1px solid transparent; border-radius: 3px;
               padding: 2px 8px; }}
QToolButton:hover {{ color: {TEXT}; border-color: {GRID}; }}
QToolButton:checked {{ color: {TEXT}; background: #2a3553; }}
QFrame#notice {{ background: #3a2f12; border-bottom: 1px solid {WARN}; }}
QFrame#notice QLabel {{ color: {TEXT}; }}
QMenuBar {{ background: {PANEL}; color: {TEXT}; }}
QMenuBar::item:selected, QMenu::item:selected {{ background: #2a3553; }}
QMenu {{ background: {PANEL}; color: {TEXT}; border: 1px solid {GRID}; }}
"""


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: BACKGROUND,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: BASE,
        QPalette.ColorRole.AlternateBase: PANEL,
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: PANEL,
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.ToolTipBase: PANEL,
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.PlaceholderText: MUTED,
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(MUTED))
    app.setPalette(palette)
    app.setStyleSheet(STYLESHEET)
