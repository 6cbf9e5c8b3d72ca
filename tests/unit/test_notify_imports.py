"""app.notify is core code: importing it loads no Qt, and the optional SDKs only when used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_notify_loads_no_qt_and_no_optional_sdk() -> None:
    code = (
        "import sys, app.notify\n"
        "print(sorted(m for m in ('PySide6', 'qasync', 'twilio', 'desktop_notifier') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
