"""Starting the window: one asyncio loop inside Qt's loop (qasync), and the smoke test."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("QT_API", "pyside6")  # qasync picks its binding from this

import qasync  # noqa: E402
from PySide6.QtGui import QFontDatabase  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from app.runtime import Runtime  # noqa: E402
from ui.main_window import MainWindow  # noqa: E402
from ui.theme import apply_dark_theme  # noqa: E402

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmokeTest:
    seconds: float = 4.0
    screenshot: Path | None = None


def make_application() -> QApplication:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Meridian Terminal")
    app.setOrganizationName("Meridian")
    app.setQuitOnLastWindowClosed(False)  # the main coroutine decides when to stop, after a clean shutdown
    apply_dark_theme(app)
    return app


def smoke_failures(window: MainWindow) -> list[str]:
    """What a user would see wrong: nothing painted, no text, no live prices."""
    failures = []
    if not QFontDatabase.families():
        failures.append("no fonts are installed, so every letter would draw as an empty box (install fonts-dejavu-core)")
    if window.chart.candles.paints == 0:
        failures.append("the chart never painted")
    if window.chart.error:
        failures.append(f"the chart could not load: {window.chart.error}")
    if window.chart.live_updates < 2:
        failures.append("no live ticks reached the chart")
    if window.runtime.state.seq and not any(window.runtime.state.seq.values()):
        failures.append("the watchlist received no prices")
    return failures


async def show_error(parent: MainWindow, text: str) -> None:
    """A message box that does not start a nested event loop (exec() would re-enter asyncio)."""
    box = QMessageBox(QMessageBox.Icon.Critical, "Meridian Terminal", text, QMessageBox.StandardButton.Close, parent)
    done = asyncio.get_running_loop().create_future()
    box.finished.connect(lambda _result: done.done() or done.set_result(None))
    box.open()
    await done


async def _run_window(app: QApplication, runtime: Runtime, smoke: SmokeTest | None) -> int:
    window = MainWindow(runtime)
    closed = asyncio.Event()
    window.closed.connect(closed.set)
    window.restore_layout()
    window.show()
    try:
        await window.start()
    except Exception as exc:
        await runtime.stop()
        if smoke is not None:
            print(f"smoke test failed: the market could not start: {exc}", file=sys.stderr)
            return 1
        await show_error(window, f"The market could not start:\n\n{exc}")
        return 1
    if smoke is None:
        await closed.wait()
        await runtime.stop()
        return 0
    deadline = time.monotonic() + smoke.seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    # Let Qt paint on its own loop turn: forcing processEvents() from inside a coroutine would
    # re-enter asyncio tasks.
    window.update()
    await asyncio.sleep(0.2)
    if smoke.screenshot is not None:
        smoke.screenshot.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(smoke.screenshot))
    failures = smoke_failures(window)
    window.close()
    await runtime.stop()
    if failures:
        print("smoke test failed: " + "; ".join(failures), file=sys.stderr)
        return 1
    print(f"smoke test passed: {window.chart.live_updates} chart updates, "
          f"{runtime.feed.events if runtime.feed else 0} stream events, fonts: {len(QFontDatabase.families())}")
    return 0


def show_startup_error(text: str) -> None:
    """Before any loop runs, a plain modal box is safe."""
    make_application()
    QMessageBox.critical(None, "Meridian Terminal", text)


def run_window(runtime: Runtime, smoke: SmokeTest | None = None) -> int:
    """Open the terminal and block until it closes; returns the process exit code."""
    app = make_application()
    runtime.open_store()
    return qasync.run(_run_window(app, runtime, smoke))
