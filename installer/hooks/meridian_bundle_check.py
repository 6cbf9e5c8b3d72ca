"""What the packaged app can do, as JSON: run with MERIDIAN_BUNDLE_CHECK=1 (see rthook_meridian.py).

tests/packaging reads this to prove what only the frozen app can show: keyring's backends survived
freezing (keyring finds them through entry points, i.e. package metadata), the modules the app imports
by name at run time are there, Qt has fonts and plugins, resources are found, and where files would go.
Nothing here writes a file or touches the keyring's contents.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

# Imported by name at run time (importlib or lazily), so only an import here proves the bundle has them.
RUNTIME_IMPORTS = (
    "ccxt", "ccxt.async_support", "ccxt.protobuf.mexc.PushDataV3ApiWrapper_pb2", "google.protobuf.message",
    "keyring.backends.SecretService", "secretstorage", "jeepney", "argon2.low_level",
    "cryptography.hazmat.primitives.ciphers.aead", "aiohttp", "websockets.asyncio.client", "numpy",
    "pyqtgraph", "qasync", "platformdirs", "tomli_w", "aiosmtplib", "desktop_notifier", "stripe",
)
EXCHANGES = ("binance", "gate", "mexc")  # app/venues/*.py


def _try(fn: Any) -> dict[str, Any]:
    try:
        return {"ok": True, "value": fn()}
    except BaseException as exc:  # noqa: BLE001  (a report: every failure is data)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                "where": traceback.format_exc(limit=-3).splitlines()[-4:]}


def _import_seconds() -> dict[str, float]:
    """Seconds to import the heavy parts, in start-up order, from the bundle's archive (cold start data)."""
    import time

    seconds = {}
    for name in ("PySide6.QtWidgets", "numpy", "pyqtgraph", "ccxt", "ccxt.async_support", "app.runtime", "ui.app"):
        started = time.perf_counter()
        importlib.import_module(name)
        seconds[name] = round(time.perf_counter() - started, 3)
    return seconds


def _imports() -> dict[str, Any]:
    results = {name: _try(lambda name=name: importlib.import_module(name).__name__) for name in RUNTIME_IMPORTS}
    for package in ("app", "ui"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            results[info.name] = _try(lambda name=info.name: importlib.import_module(name).__name__)
    return results


def _exchanges() -> dict[str, Any]:
    def build(exchange_id: str) -> str:
        import ccxt.async_support as ccxt_async

        exchange = getattr(ccxt_async, exchange_id)({"enableRateLimit": False})
        # Not awaited network: only that the class and its API tables are complete.
        return f"{type(exchange).__name__} with {len(exchange.api or {})} API groups"

    return {name: _try(lambda name=name: build(name)) for name in EXCHANGES}


def _notifier() -> str:
    """desktop-notifier's backend for this platform (D-Bus on Linux), built but not used to send."""
    from desktop_notifier import DesktopNotifier

    notifier = DesktopNotifier(app_name="Meridian Terminal")
    backend = getattr(notifier, "_backend", None)
    return type(backend).__name__ if backend is not None else type(notifier).__name__


def _keyring() -> dict[str, Any]:
    import keyring
    import keyring.backend

    from app.secrets.store import backend_status

    status = backend_status()
    return {
        "entry_points": sorted(ep.value for ep in metadata.entry_points(group="keyring.backends")),
        "viable_backends": sorted(f"{type(b).__module__}.{type(b).__name__}" for b in keyring.backend.get_all_keyring()),
        "chosen": f"{type(keyring.get_keyring()).__module__}.{type(keyring.get_keyring()).__name__}",
        "secure": status.secure,
        "status_name": status.name,
        "explanation": status.explanation,
    }


def _qt(bundle: Path) -> dict[str, Any]:
    from PySide6.QtCore import QLibraryInfo, qVersion
    from PySide6.QtGui import QFontDatabase, QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
    return {
        "version": qVersion(),
        "platform": app.platformName(),
        "plugins_dir_in_bundle": str(plugins).startswith(str(bundle)),
        "platform_plugins": sorted(p.name for p in (plugins / "platforms").glob("*")),
        "font_families": len(QFontDatabase.families()),
        "loaded_modules": sorted(m for m in sys.modules if m.startswith("PySide6.Qt")),
    }


def _resources(bundle: Path) -> dict[str, Any]:
    found = []
    for package in ("app", "ui"):
        base = bundle / package
        found += [str(p.relative_to(bundle)) for p in base.rglob("*") if p.is_file() and p.suffix != ".pyc"]
    return {"package_data": sorted(found)}


def _paths() -> dict[str, str]:
    from app.paths import resolve_paths

    paths = resolve_paths()
    return {"config_file": str(paths.config_file), "data_dir": str(paths.data_dir), "log_dir": str(paths.log_dir)}


def run(bundle: Path) -> int:
    report = {
        "frozen": bool(getattr(sys, "frozen", False)),
        "bundle": str(bundle),
        "python": sys.version.split()[0],
        "import_seconds": _try(_import_seconds),  # first: later checks import the same modules
        "paths": _try(_paths),
        "resources": _try(lambda: _resources(bundle)),
        "keyring": _try(_keyring),
        "desktop_notifier": _try(_notifier),
        "imports": _imports(),
        "exchanges": _exchanges(),
        "qt": _try(lambda: _qt(bundle)),
        "environment": {k: os.environ[k] for k in ("QT_QPA_PLATFORM", "DISPLAY") if k in os.environ},
    }
    print(json.dumps(report, indent=1, default=str))
    return 0
