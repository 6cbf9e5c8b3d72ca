"""Settings: defaults, round trip, validation messages, rejected files kept aside; and the app paths."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from datetime import datetime
from pathlib import Path

import platformdirs
import pytest

from app.domain import TIMEFRAMES
from app.paths import AppPaths, ensure_dirs, resolve_paths
from app.settings import (
    DEFAULT_SYMBOLS,
    Settings,
    SettingsError,
    SimSettings,
    UiSettings,
    WatchlistSettings,
    load_settings,
    save_settings,
    settings_from_dict,
    settings_to_dict,
    settings_to_toml,
)

KEPT_ASIDE = re.compile(r"settings\.toml\.invalid-\d{8}-\d{6}(-\d+)?")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "settings.toml"


# --------------------------------------------------------------------------- defaults and round trip


def test_missing_file_gives_defaults_and_writes_nothing(cfg: Path) -> None:
    result = load_settings(cfg)

    assert result.settings == Settings()
    assert result.problems == []
    assert result.kept_aside is None
    assert list(cfg.parent.iterdir()) == []


def test_defaults_are_the_documented_ones() -> None:
    s = Settings()
    assert s.venue == "sim"
    assert s.watchlist.symbols == DEFAULT_SYMBOLS
    assert len(s.watchlist.symbols) == 10 and s.watchlist.symbols[0] == "BTC/USDT"
    assert (s.sim.seed, s.sim.tick_interval_ms, s.sim.history_days) == (7, 250, 5)
    assert (s.sim.replay_file, s.sim.replay_symbol, s.sim.replay_speed) == ("", "BTC/USDT", 60.0)
    assert s.sim.replay_path is None
    assert (s.ui.timeframe, s.ui.refresh_hz) == ("1m", 30)


def test_round_trip_save_then_load_is_equal(tmp_path: Path) -> None:
    replay = write(tmp_path / "candles.json", "[[0, 1, 2, 0.5, 1.5, 10]]")
    settings = Settings(
        venue="binance",
        watchlist=WatchlistSettings(symbols=("ETH/BTC", "SOL/USDT")),
        sim=SimSettings(
            seed=0,
            tick_interval_ms=20,
            history_days=30,
            replay_file=str(replay),
            replay_symbol="ETH/BTC",
            replay_speed=100000.0,
        ),
        ui=UiSettings(timeframe="4h", refresh_hz=60),
    )
    path = tmp_path / "nested" / "dir" / "settings.toml"  # the parent does not exist yet

    save_settings(settings, path)
    result = load_settings(path)

    assert result.problems == []
    assert result.settings == settings
    assert result.settings.sim.replay_path == replay
    assert [p.name for p in path.parent.iterdir()] == ["settings.toml"]  # no temp file left behind


def test_default_file_round_trips_and_documents_each_key(cfg: Path) -> None:
    save_settings(Settings(), cfg)
    text = cfg.read_text(encoding="utf-8")

    assert load_settings(cfg).settings == Settings()
    assert "tick_interval_ms = 250" in text
    assert "# how often each symbol ticks: a whole number from 20 to 10000 (milliseconds)" in text


def test_dataclasses_replace_updates_and_saves(cfg: Path) -> None:
    s = Settings()
    s2 = dataclasses.replace(s, ui=dataclasses.replace(s.ui, timeframe="1h"))
    save_settings(s2, cfg)
    assert load_settings(cfg).settings.ui.timeframe == "1h"
    assert s.ui.timeframe == "1m"


def test_save_replaces_existing_file_atomically_and_leaves_original_on_failure(
    cfg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_settings(Settings(), cfg)
    before = cfg.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_settings(dataclasses.replace(Settings(), venue="gate"), cfg)

    assert cfg.read_bytes() == before
    assert [p.name for p in cfg.parent.iterdir()] == ["settings.toml"]


def test_save_refuses_invalid_settings_and_writes_nothing(cfg: Path) -> None:
    bad = dataclasses.replace(Settings(), sim=dataclasses.replace(Settings().sim, tick_interval_ms=5))
    with pytest.raises(SettingsError) as info:
        save_settings(bad, cfg)
    assert "sim.tick_interval_ms" in str(info.value)
    assert not cfg.exists()


def test_partial_file_keeps_defaults_for_missing_keys(cfg: Path) -> None:
    write(cfg, "[ui]\nrefresh_hz = 10\n")
    result = load_settings(cfg)
    assert result.problems == []
    assert result.settings == dataclasses.replace(Settings(), ui=UiSettings(refresh_hz=10))


def test_symbols_are_upper_cased_and_deduplicated_in_order(cfg: Path) -> None:
    write(cfg, '[watchlist]\nsymbols = ["eth/usdt", " btc/usdt ", "ETH/USDT", "Sol/Usdt"]\n')
    result = load_settings(cfg)
    assert result.problems == []
    assert result.settings.watchlist.symbols == ("ETH/USDT", "BTC/USDT", "SOL/USDT")


def test_relative_replay_file_is_relative_to_the_settings_folder(cfg: Path, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    replay = write(tmp_path / "data" / "btc.json", "[]")
    write(cfg, '[sim]\nreplay_file = "data/btc.json"\n')
    result = load_settings(cfg)
    assert result.problems == []
    assert result.settings.sim.replay_path == replay


def test_utf8_bom_is_accepted(cfg: Path) -> None:
    cfg.write_bytes(b"\xef\xbb\xbfvenue = \"gate\"\n")
    result = load_settings(cfg)
    assert result.problems == []
    assert result.settings.venue == "gate"


def test_dict_helpers_round_trip() -> None:
    d = settings_to_dict(Settings())
    assert d["watchlist"]["symbols"] == list(DEFAULT_SYMBOLS)
    assert settings_from_dict(d) == Settings()
    assert settings_from_dict(tomllib.loads(settings_to_toml(Settings()))) == Settings()


# --------------------------------------------------------------------------- bad values


BAD_VALUES = [
    # (TOML, the key the message must name, a fragment of the allowed values, the value as shown)
    ('[sim]\ntick_interval_ms = "fast"', "sim.tick_interval_ms", "from 20 to 10000", "'fast'"),
    ("[sim]\ntick_interval_ms = 19", "sim.tick_interval_ms", "from 20 to 10000", "found 19"),
    ("[sim]\ntick_interval_ms = 10001", "sim.tick_interval_ms", "from 20 to 10000", "found 10001"),
    ("[sim]\ntick_interval_ms = 250.0", "sim.tick_interval_ms", "whole number", "found 250.0"),
    ("[sim]\nseed = -1", "sim.seed", "0 or more", "found -1"),
    ("[sim]\nseed = true", "sim.seed", "whole number", "found true"),
    ("[sim]\nhistory_days = 31", "sim.history_days", "from 1 to 30", "found 31"),
    ("[sim]\nhistory_days = 0", "sim.history_days", "from 1 to 30", "found 0"),
    ("[sim]\nreplay_speed = 0", "sim.replay_speed", "greater than 0 and at most 100000", "found 0"),
    ("[sim]\nreplay_speed = -2.5", "sim.replay_speed", "greater than 0", "found -2.5"),
    ("[sim]\nreplay_speed = 100000.5", "sim.replay_speed", "at most 100000", "found 100000.5"),
    ("[sim]\nreplay_speed = nan", "sim.replay_speed", "greater than 0", "found nan"),
    ("[sim]\nreplay_speed = inf", "sim.replay_speed", "at most 100000", "found inf"),
    ('[sim]\nreplay_speed = "60"', "sim.replay_speed", "a number", "found '60'"),
    ("[sim]\nreplay_speed = false", "sim.replay_speed", "a number", "found false"),
    ('[sim]\nreplay_symbol = "BTCUSDT"', "sim.replay_symbol", "BASE/QUOTE", "'BTCUSDT'"),
    ('[sim]\nreplay_symbol = "BTC/USDT/X"', "sim.replay_symbol", "BASE/QUOTE", "'BTC/USDT/X'"),
    ('[sim]\nreplay_file = "no-such-candles.json"', "sim.replay_file", "existing JSON candle file", "no such file"),
    ("[sim]\nreplay_file = 3", "sim.replay_file", "existing JSON candle file", "found 3"),
    ('[watchlist]\nsymbols = ["BTC/USDT", "BTCUSDT"]', "watchlist.symbols (entry 2)", "BASE/QUOTE", "'BTCUSDT'"),
    ('[watchlist]\nsymbols = ["BTC/USDT", 5]', "watchlist.symbols (entry 2)", "BASE/QUOTE", "found 5"),
    ('[watchlist]\nsymbols = ["/USDT"]', "watchlist.symbols (entry 1)", "BASE/QUOTE", "'/USDT'"),
    ('[watchlist]\nsymbols = ["BTC /USDT"]', "watchlist.symbols (entry 1)", "BASE/QUOTE", "'BTC /USDT'"),
    ("[watchlist]\nsymbols = []", "watchlist.symbols", "one or more symbols", "found []"),
    ('[watchlist]\nsymbols = "BTC/USDT"', "watchlist.symbols", "a list", "'BTC/USDT'"),
    ('[ui]\ntimeframe = "2m"', "ui.timeframe", "one of '1m', '5m', '15m', '1h', '4h', '1d'", "'2m'"),
    ('[ui]\ntimeframe = "1M"', "ui.timeframe", "one of", "'1M'"),
    ("[ui]\nrefresh_hz = 0", "ui.refresh_hz", "from 1 to 60", "found 0"),
    ("[ui]\nrefresh_hz = 61", "ui.refresh_hz", "from 1 to 60", "found 61"),
    ("[ui]\nrefresh_hz = true", "ui.refresh_hz", "whole number", "found true"),
    ("venue = 5", "venue", "a name such as 'sim'", "found 5"),
    ('venue = ""', "venue", "a name", "found ''"),
    ("sim = 5", "sim", "a table, written as [sim]", "found 5"),
]


@pytest.mark.parametrize(("toml", "key", "allowed", "shown"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_each_bad_value_is_rejected_with_a_message_naming_the_key(
    cfg: Path, toml: str, key: str, allowed: str, shown: str
) -> None:
    write(cfg, toml + "\n")

    result = load_settings(cfg)

    assert len(result.problems) == 1, result.problems
    message = result.problems[0]
    assert message.startswith(key + " must be "), message
    assert allowed in message
    assert shown in message
    assert message.endswith(".")
    assert result.settings == Settings()
    assert result.kept_aside is not None


def test_message_is_a_sentence_a_user_can_act_on(cfg: Path) -> None:
    write(cfg, '[sim]\ntick_interval_ms = "fast"\n')
    assert load_settings(cfg).problems == [
        "sim.tick_interval_ms must be a whole number from 20 to 10000 (milliseconds); found 'fast'."
    ]


def test_bool_is_not_accepted_as_an_int() -> None:
    for key in ("seed", "tick_interval_ms", "history_days"):
        with pytest.raises(SettingsError) as info:
            settings_from_dict({"sim": {key: True}})
        [message] = info.value.problems
        assert message.startswith(f"sim.{key} must be a whole number")
        assert message.endswith("; found true.")


def test_every_timeframe_is_accepted() -> None:
    for tf in TIMEFRAMES:
        assert settings_from_dict({"ui": {"timeframe": tf}}).ui.timeframe == tf


def test_several_problems_are_reported_together_and_nothing_is_applied(cfg: Path) -> None:
    write(
        cfg,
        'venue = "gate"\n'
        "[watchlist]\n"
        'symbols = ["BTC/USDT", "no pe", "eth-usdt"]\n'
        "[sim]\n"
        "seed = true\n"
        "tick_interval_ms = 5\n"
        "[ui]\n"
        'timeframe = "2m"\n'
        "refresh_hz = 10\n",
    )

    result = load_settings(cfg)

    keys = [p.split(" ")[0] for p in result.problems]
    assert keys == ["watchlist.symbols", "watchlist.symbols", "sim.seed", "sim.tick_interval_ms", "ui.timeframe"]
    assert "(entry 2)" in result.problems[0] and "(entry 3)" in result.problems[1]
    # The valid values in the same file are not applied either.
    assert result.settings == Settings()
    assert result.settings.venue == "sim" and result.settings.ui.refresh_hz == 30


def test_unknown_key_lists_the_known_keys_of_its_table(cfg: Path) -> None:
    write(cfg, "[sim]\ntick_intervl_ms = 100\n")

    [message] = load_settings(cfg).problems

    assert message.startswith("sim.tick_intervl_ms is not a known setting")
    for known in ("seed", "tick_interval_ms", "history_days", "replay_file", "replay_symbol", "replay_speed"):
        assert known in message
    assert "Did you mean sim.tick_interval_ms?" in message


def test_unknown_top_level_table_lists_the_top_level_keys(cfg: Path) -> None:
    write(cfg, "[riks]\nmax_order_notional = 100\n")

    [message] = load_settings(cfg).problems

    assert message.startswith("riks is not a known setting")
    assert "venue, watchlist, sim, ui" in message and "Did you mean risk?" in message


def test_invalid_toml_reports_line_and_column(cfg: Path) -> None:
    write(cfg, '[ui]\nrefresh_hz = = 3\ntimeframe = "1m"\n')

    result = load_settings(cfg)

    [message] = result.problems
    assert "not valid TOML" in message
    assert "line 2" in message and "column" in message
    assert result.settings == Settings()
    assert result.kept_aside is not None


def test_not_utf8_is_a_problem(cfg: Path) -> None:
    cfg.write_bytes(b'venue = "\xff\xfe"\n')

    result = load_settings(cfg)

    [message] = result.problems
    assert "not UTF-8" in message and "0xff" in message
    assert result.settings == Settings()
    assert result.kept_aside is not None and result.kept_aside.read_bytes() == b'venue = "\xff\xfe"\n'


def test_unreadable_file_is_a_problem_and_is_kept(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 000 is no obstacle to root (these tests may run as root), so fail the read itself.
    write(cfg, 'venue = "gate"\n')
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == cfg:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    result = load_settings(cfg)

    [message] = result.problems
    assert "could not be read" in message and "Permission denied" in message
    assert result.settings == Settings()
    assert result.kept_aside is not None
    assert real_read_bytes(result.kept_aside) == b'venue = "gate"\n'


def test_settings_path_that_is_a_folder_is_a_problem(cfg: Path) -> None:
    cfg.mkdir()
    result = load_settings(cfg)
    assert len(result.problems) == 1 and "is a folder" in result.problems[0]
    assert result.settings == Settings()
    assert cfg.is_dir()


# --------------------------------------------------------------------------- keeping a bad file


def test_bad_file_is_moved_aside_byte_for_byte(cfg: Path) -> None:
    content = '# my settings\r\n[sim]\r\nseed = -3   # oops\r\n\tvenue_note = "é"\r\n'.encode()
    cfg.write_bytes(content)

    result = load_settings(cfg)

    assert result.settings == Settings()
    assert len(result.problems) == 2
    assert not cfg.exists()
    assert result.kept_aside is not None
    assert result.kept_aside.parent == cfg.parent
    assert KEPT_ASIDE.fullmatch(result.kept_aside.name)
    assert result.kept_aside.read_bytes() == content


def test_kept_aside_name_uses_the_time_and_never_overwrites(cfg: Path) -> None:
    when = datetime(2024, 3, 9, 14, 5, 7)
    existing = cfg.with_name("settings.toml.invalid-20240309-140507")
    existing.write_bytes(b"older bad file")

    write(cfg, "seed = 1\n")
    first = load_settings(cfg, now=lambda: when).kept_aside
    write(cfg, "seed = 2\n")
    second = load_settings(cfg, now=lambda: when).kept_aside

    assert first == cfg.with_name("settings.toml.invalid-20240309-140507-2")
    assert second == cfg.with_name("settings.toml.invalid-20240309-140507-3")
    assert existing.read_bytes() == b"older bad file"
    assert first.read_bytes() == b"seed = 1\n"
    assert second.read_bytes() == b"seed = 2\n"


def test_saving_after_a_rejected_file_does_not_touch_the_kept_copy(cfg: Path) -> None:
    write(cfg, "[ui]\nrefresh_hz = 0\n")
    kept = load_settings(cfg).kept_aside
    assert kept is not None

    save_settings(Settings(), cfg)

    assert kept.read_text(encoding="utf-8") == "[ui]\nrefresh_hz = 0\n"
    assert load_settings(cfg).problems == []


# --------------------------------------------------------------------------- paths


def test_default_paths_follow_platformdirs_and_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)

    paths = resolve_paths()

    assert paths.config_file == Path(platformdirs.user_config_dir("meridian-terminal", "Meridian")) / "settings.toml"
    assert paths.data_dir == Path(platformdirs.user_data_dir("meridian-terminal", "Meridian"))
    assert paths.log_dir == Path(platformdirs.user_log_dir("meridian-terminal", "Meridian"))
    assert paths.database_file == paths.data_dir / "meridian.sqlite3"
    assert str(paths.data_dir).startswith(str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_data_dir_option_puts_logs_under_it_and_ensure_dirs_creates_them(tmp_path: Path) -> None:
    paths = resolve_paths(config=tmp_path / "cfg" / "s.toml", data_dir=tmp_path / "d")

    assert paths == AppPaths(
        config_file=tmp_path / "cfg" / "s.toml", data_dir=tmp_path / "d", log_dir=tmp_path / "d" / "logs"
    )
    assert not (tmp_path / "d").exists()

    ensure_dirs(paths)

    assert (tmp_path / "d" / "logs").is_dir() and (tmp_path / "cfg").is_dir()
    assert not paths.config_file.exists()
