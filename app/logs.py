"""Logging to the user log dir. Secrets never reach a log: nothing here formats one."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path


class _Brief(logging.Formatter):
    """The console gets the sentence; the traceback goes only to the log file."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


class _Scrub(logging.Filter):
    """A backstop: whatever a library formats into a record, no credential-looking value gets through."""

    def filter(self, record: logging.LogRecord) -> bool:
        from app.resilience.errors import scrub

        try:
            message = record.getMessage()
        except Exception:  # a record that cannot format itself is left to the handler's own error path
            return True
        clean = scrub(message, limit=2000)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


# Libraries that log requests, headers or frames at DEBUG: ccxt logs signed requests with their API key
# headers. They stay at WARNING even with --verbose, which raises only our own loggers.
QUIET_LIBRARIES = ("ccxt", "websockets", "aiohttp", "asyncio", "urllib3", "keyring", "qasync")


def setup_logging(log_dir: Path, *, verbose: bool = False, to_stderr: bool = True) -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "meridian.log"
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for name in ("app", "ui", "__main__"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    file_handler.addFilter(_Scrub())
    root.addHandler(file_handler)
    if to_stderr:
        console = logging.StreamHandler()
        console.setLevel(logging.DEBUG if verbose else logging.WARNING)
        console.setFormatter(_Brief("%(levelname)s %(name)s: %(message)s"))
        console.addFilter(_Scrub())
        root.addHandler(console)
    return path
