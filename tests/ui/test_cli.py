"""`main.py` as a user runs it: the smoke test, the watch command, a bad settings file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from PySide6.QtGui import QImage

ROOT = Path(__file__).resolve().parents[2]


def meridian(tmp_path: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--config", str(tmp_path / "settings.toml"),
         "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
    )


def test_smoke_test_opens_the_window_and_saves_a_screenshot(tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    result = meridian(tmp_path, "--smoke-test", "--smoke-seconds", "3", "--screenshot", str(shot))
    assert result.returncode == 0, result.stderr
    assert "smoke test passed" in result.stdout
    image = QImage(str(shot))
    assert image.width() >= 800 and image.height() >= 500
    # A real picture, not a blank frame: the candles' up and down colours are both on it.
    colours = {image.pixelColor(x, y).name() for x in range(0, image.width(), 3) for y in range(0, image.height(), 3)}
    assert "#26a69a" in colours and "#ef5350" in colours


def test_smoke_test_fails_with_the_reason_when_the_market_cannot_start(tmp_path: Path) -> None:
    bad = tmp_path / "candles.json"
    bad.write_text("[[1, 2, 3]", encoding="utf-8")
    (tmp_path / "settings.toml").write_text(f'[sim]\nreplay_file = "{bad}"\n', encoding="utf-8")
    result = meridian(tmp_path, "--smoke-test", "--smoke-seconds", "1")
    assert result.returncode == 1
    assert "could not start" in result.stderr and str(bad) in result.stderr
    assert "Traceback" not in result.stderr


def test_watch_prints_live_tickers_as_json_lines(tmp_path: Path) -> None:
    result = meridian(tmp_path, "watch", "BTC/USDT", "--count", "4")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4
    for row in lines:
        assert set(row) == {"symbol", "last", "bid", "ask", "ts"}
        assert row["symbol"] == "BTC/USDT"
        assert all(isinstance(row[k], str) for k in ("last", "bid", "ask"))  # exact decimals, not floats
        assert Decimal(row["bid"]) <= Decimal(row["last"]) <= Decimal(row["ask"])
    assert [r["ts"] for r in lines] == sorted(r["ts"] for r in lines)


def test_watch_names_the_listed_symbols_for_an_unknown_one(tmp_path: Path) -> None:
    result = meridian(tmp_path, "watch", "NOPE/USDT", "--count", "1")
    assert result.returncode == 2
    assert "does not list NOPE/USDT" in result.stderr and "BTC/USDT" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_venue_is_a_sentence_listing_the_supported_ones(tmp_path: Path) -> None:
    result = meridian(tmp_path, "--venue", "krakenx", "watch", "BTC/USDT", "--count", "1")
    assert result.returncode == 2
    assert "no venue called 'krakenx'" in result.stderr and "sim" in result.stderr


def test_a_bad_settings_file_is_kept_aside_and_defaults_are_used(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("[sim]\ntick_interval_ms = \"fast\"\n", encoding="utf-8")
    result = meridian(tmp_path, "watch", "ETH/USDT", "--count", "1")
    assert result.returncode == 0, result.stderr
    assert "sim.tick_interval_ms" in result.stderr
    kept = list(tmp_path.glob("settings.toml.invalid-*"))
    assert len(kept) == 1 and kept[0].read_text(encoding="utf-8") == "[sim]\ntick_interval_ms = \"fast\"\n"
    assert json.loads(result.stdout.splitlines()[0])["symbol"] == "ETH/USDT"
