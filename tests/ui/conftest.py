"""Drive the real window: pytest-qt widgets on a qasync loop, the simulated market, a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

os.environ.setdefault("QT_API", "pyside6")
if os.environ.get("QT_QPA_PLATFORM", "offscreen") == "offscreen":
    # Qt's offscreen screen is 800x600 by default, smaller than the window with its docks, and
    # restoreGeometry() clamps to the screen: give the tests a desktop-sized screen.
    _screen = Path(tempfile.gettempdir()) / "meridian-offscreen-screen.json"
    _screen.write_text(json.dumps({"screens": [{"name": "test", "x": 0, "y": 0, "width": 1920, "height": 1080,
                                                "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}))
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={_screen}"

import qasync  # noqa: E402

from app.paths import resolve_paths  # noqa: E402
from app.runtime import Runtime  # noqa: E402
from app.settings import Settings, SimSettings  # noqa: E402
from ui.app import make_application  # noqa: E402
from ui.main_window import MainWindow  # noqa: E402

# Fast ticks and a short history keep each test to a second or two.
FAST = replace(Settings(), sim=SimSettings(seed=11, tick_interval_ms=40, history_days=2))


@pytest.fixture(scope="session")
def _session_loop(qapp) -> Iterator[qasync.QEventLoop]:
    """One qasync loop for every UI test: a loop per test leaked qasync's executor QThreads, and
    hundreds of them crashed Qt. It is the running loop only while a UI test runs (see `qloop`), so
    pytest-asyncio's own loops in other tests are not disturbed."""
    make_application()
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.events._set_running_loop(None)
    yield loop
    loop._QEventLoop__is_running = False  # already_running loops are never "stopped" by exec(); let close() run
    loop.close()


@pytest.fixture
def qloop(qapp, _session_loop: qasync.QEventLoop) -> Iterator[qasync.QEventLoop]:
    """The asyncio loop living inside Qt's: processing Qt events (qtbot.wait*) runs asyncio callbacks."""
    loop = _session_loop
    asyncio.events._set_running_loop(loop)
    asyncio.set_event_loop(loop)
    yield loop
    for task in asyncio.all_tasks(loop):
        task.cancel()
    for _ in range(3):
        qapp.processEvents()  # let cancelled tasks finish before the next test
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(None)


def run(qtbot, coro, timeout: int = 15_000):
    """Run a coroutine on the Qt-hosted loop while Qt keeps processing events."""
    task = asyncio.ensure_future(coro)
    qtbot.waitUntil(task.done, timeout=timeout)
    return task.result()


@pytest.fixture
def open_window(qtbot, qloop, tmp_path: Path) -> Iterator[Callable[..., MainWindow]]:
    """Opens the terminal like `main.py` does; every window opened is stopped cleanly at the end."""
    runtimes: list[Runtime] = []

    def _open(settings: Settings = FAST, data_dir: Path | None = None, notices: list[str] | None = None) -> MainWindow:
        paths = resolve_paths(tmp_path / "settings.toml", data_dir or tmp_path / "data")
        runtime = Runtime(settings, paths)
        runtime.notices.extend(notices or [])
        runtime.open_store()
        window = MainWindow(runtime)
        qtbot.addWidget(window)
        window.restore_layout()
        window.show()
        run(qtbot, window.start())
        runtimes.append(runtime)
        return window

    yield _open
    # pytest-qt has closed the windows by now; stop what they ran.
    for runtime in runtimes:
        run(qtbot, runtime.stop())
