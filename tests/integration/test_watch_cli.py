"""`main.py --venue binance watch BTC/USDT` against a local Binance: live tickers as JSON lines."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

from tests.servers.binance import BinanceServer

ROOT = Path(__file__).resolve().parents[2]


async def test_watch_prints_binance_tickers_from_the_configured_stream(tmp_path: Path) -> None:
    async with BinanceServer(rate=20.0) as srv:
        config = tmp_path / "settings.toml"
        config.write_text(f'[venues.binance]\nrest_url = "{srv.rest_url}"\nws_url = "{srv.ws_url}/ws"\n', encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "main.py"), "--venue", "binance", "--config", str(config),
            "--data-dir", str(tmp_path / "data"), "watch", "BTC/USDT", "--count", "3",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            cwd=ROOT, env=dict(os.environ),
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert row["symbol"] == "BTC/USDT" and isinstance(row["last"], str)
        assert Decimal(row["bid"]) <= Decimal(row["ask"])
    assert any(r.path == "/api/v3/exchangeInfo" for r in srv.requests)  # markets came from the configured REST base
    assert any("/stream" in e.path for e in srv.ws_log if e.kind == "open")  # prices from the configured stream
