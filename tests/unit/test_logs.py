"""Logs never carry credentials, even with --verbose."""

from __future__ import annotations

import logging
from pathlib import Path

from app.logs import setup_logging


def test_verbose_logging_keeps_library_request_dumps_and_key_values_out(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        path = setup_logging(tmp_path, verbose=True, to_stderr=False)
        logging.getLogger("ccxt.base.exchange").debug("POST https://api.binance.com/api/v3/order, Request: "
                                                      "{'X-MBX-APIKEY': 'KEYVALUE123'} timestamp=1&signature=SIG456")
        logging.getLogger("app.venues").debug("sent with apiKey=KEYVALUE123 and secret: SECRET789")
        logging.getLogger("app.venues").debug("debug messages of our own are kept")
        for handler in root.handlers:
            handler.flush()
        text = path.read_text(encoding="utf-8")
        assert "debug messages of our own are kept" in text
        for secret in ("KEYVALUE123", "SIG456", "SECRET789"):
            assert secret not in text
    finally:
        for handler in list(root.handlers):
            if handler not in before[0]:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(before[1])


def test_simulated_order_ids_differ_between_runs() -> None:
    from decimal import Decimal

    from app.domain import Market
    from app.venues.sim_orders import SimAccount, SimMatcher

    market = Market("BTC/USDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.001"))
    a = SimMatcher({"BTC/USDT": market}, SimAccount({}))
    b = SimMatcher({"BTC/USDT": market}, SimAccount({}))
    assert a._run != b._run  # a journal keeps earlier runs' ids: a new run must not reuse them
