"""User settings: one TOML file in the user config dir, validated as a whole.

Never a secret here: API keys live in the operating system's keyring
(`app.secrets`).

Every setting is declared once, next to its default, with a `Rule` that checks
the value, normalises it and describes what is allowed; tables are dataclasses
declared with `table()`. Loading walks that schema generically, so adding a
table (venues, notify, risk) is a dataclass plus one line in `Settings`.

Decisions others rely on:
- A file with any problem is rejected as a whole and defaults are used:
  half-applied trading settings are dangerous. Every problem is reported, not
  just the first, and the file is moved aside (never overwritten or deleted).
- Unknown keys are errors: a misspelt risk limit silently ignored would be
  worse than a refused file.
- Missing keys and tables take their defaults, so a file may hold only what
  the user changed.
- Watchlist symbols are upper-cased and de-duplicated keeping the first
  occurrence: a duplicate is harmless, so it does not reject the whole file.
- A relative `sim.replay_file` is relative to the settings file's folder; it is
  stored as an absolute path after loading.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
from urllib.parse import urlsplit
import tempfile
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import tomli_w

from app.domain import TIMEFRAMES, split_symbol

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem with one value, to be completed into a sentence with its key."""

    allowed: str
    found: object
    where: str = ""  # after the key, e.g. " (entry 3)"
    note: str = ""  # after the value, e.g. " (no such file)"

    def sentence(self, key: str) -> str:
        return f"{key}{self.where} must be {self.allowed}; found {_show(self.found)}{self.note}."


class Invalid(Exception):
    def __init__(self, *issues: Issue) -> None:
        super().__init__(*issues)
        self.issues = issues


@dataclass(frozen=True, slots=True)
class Context:
    base_dir: Path  # the settings file's folder: relative paths in the file start there


class Rule:
    """How one setting is checked, normalised and described.

    `allowed` completes the sentence "KEY must be ..."; `parse` returns the
    normalised value or raises `Invalid`; `dump` turns a value back into TOML data.
    """

    @property
    def allowed(self) -> str:
        raise NotImplementedError

    def parse(self, value: object, ctx: Context) -> Any:
        raise NotImplementedError

    def dump(self, value: Any) -> object:
        return value

    def fail(self, value: object, note: str = "") -> Invalid:
        return Invalid(Issue(self.allowed, value, note=note))


@dataclass(frozen=True, slots=True)
class WholeNumber(Rule):
    min: int
    max: int | None = None
    unit: str = ""

    @property
    def allowed(self) -> str:
        if self.max is not None:
            text = f"a whole number from {self.min} to {self.max}"
        else:
            text = f"a whole number of {self.min} or more"
        return f"{text} ({self.unit})" if self.unit else text

    def parse(self, value: object, ctx: Context) -> int:
        # bool is an int subclass in Python, but `true` is never a count.
        if type(value) is not int or value < self.min or (self.max is not None and value > self.max):
            raise self.fail(value)
        return value


@dataclass(frozen=True, slots=True)
class Number(Rule):
    above: float | None = None  # exclusive lower bound
    at_most: float | None = None  # inclusive upper bound
    unit: str = ""

    @property
    def allowed(self) -> str:
        bounds = []
        if self.above is not None:
            bounds.append(f"greater than {_num(self.above)}")
        if self.at_most is not None:
            bounds.append(f"at most {_num(self.at_most)}")
        text = "a number " + " and ".join(bounds) if bounds else "a number"
        return f"{text} ({self.unit})" if self.unit else text

    def parse(self, value: object, ctx: Context) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(value)
        if (self.above is not None and value <= self.above) or (self.at_most is not None and value > self.at_most):
            raise self.fail(value)
        return float(value)


@dataclass(frozen=True, slots=True)
class Choice(Rule):
    options: tuple[str, ...]

    @property
    def allowed(self) -> str:
        return "one of " + ", ".join(f"'{o}'" for o in self.options)

    def parse(self, value: object, ctx: Context) -> str:
        if not isinstance(value, str) or value not in self.options:
            raise self.fail(value)
        return value


@dataclass(frozen=True, slots=True)
class Flag(Rule):
    @property
    def allowed(self) -> str:
        return "true or false"

    def parse(self, value: object, ctx: Context) -> bool:
        if not isinstance(value, bool):
            raise self.fail(value)
        return value


_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Name(Rule):
    """An identifier such as a venue id; normalised to lower case."""

    example: str

    @property
    def allowed(self) -> str:
        return f"a name such as '{self.example}' (letters, digits and underscores, starting with a letter)"

    def parse(self, value: object, ctx: Context) -> str:
        if not isinstance(value, str) or not _NAME.fullmatch(value.strip().lower()):
            raise self.fail(value)
        return value.strip().lower()


@dataclass(frozen=True, slots=True)
class Symbol(Rule):
    @property
    def allowed(self) -> str:
        return "a symbol written as BASE/QUOTE, for example 'BTC/USDT'"

    def parse(self, value: object, ctx: Context) -> str:
        if not isinstance(value, str):
            raise self.fail(value)
        symbol = value.strip().upper()
        try:
            base, quote = split_symbol(symbol)
        except ValueError:
            raise self.fail(value) from None
        if any(ch.isspace() for ch in base + quote):
            raise self.fail(value)
        return symbol


# Stock tickers are short (AAPL, BRK-B, VOD.L, 7203.T); a longer run such as BTCUSDT is a pair written
# without its slash, which must be refused rather than sent to a stock-data provider.
_TICKER_SYMBOL = re.compile(r"\^?[A-Z0-9]{1,6}([.\-][A-Z0-9]{1,3})?")


@dataclass(frozen=True, slots=True)
class WatchSymbol(Rule):
    """A pair (BTC/USDT, EUR/USD), a stock or ETF ticker (AAPL) or an index (^GSPC): what the
    market-data providers can price when no exchange lists it."""

    @property
    def allowed(self) -> str:
        return "a pair written as BASE/QUOTE (BTC/USDT, EUR/USD), a stock ticker (AAPL) or an index (^GSPC)"

    def parse(self, value: object, ctx: Context) -> str:
        if isinstance(value, str) and "/" not in value and _TICKER_SYMBOL.fullmatch(value.strip().upper()):
            return value.strip().upper()
        try:
            return Symbol().parse(value, ctx)
        except Invalid:
            raise self.fail(value) from None


@dataclass(frozen=True, slots=True)
class SymbolList(Rule):
    pairs_only: bool = True

    @property
    def allowed(self) -> str:
        if not self.pairs_only:
            return ("a list of one or more symbols: pairs as BASE/QUOTE, stocks as tickers, indices with a caret, "
                    "for example [\"BTC/USDT\", \"EUR/USD\", \"AAPL\", \"^GSPC\"]")
        return "a list of one or more symbols written as BASE/QUOTE, for example [\"BTC/USDT\", \"ETH/USDT\"]"

    def parse(self, value: object, ctx: Context) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(value)
        item_rule: Rule = Symbol() if self.pairs_only else WatchSymbol()
        issues: list[Issue] = []
        symbols: dict[str, None] = {}  # an ordered set: duplicates keep their first place
        for i, item in enumerate(value, start=1):
            try:
                symbols.setdefault(item_rule.parse(item, ctx))
            except Invalid as err:
                issues.extend(Issue(x.allowed, x.found, where=f" (entry {i})", note=x.note) for x in err.issues)
        if issues:
            raise Invalid(*issues)
        return tuple(symbols)

    def dump(self, value: Any) -> object:
        return list(value)


@dataclass(frozen=True, slots=True)
class OptionalFile(Rule):
    """A path to an existing file, or "" for none; normalised to an absolute path."""

    what: str
    empty_means: str

    @property
    def allowed(self) -> str:
        return f"the path of an existing {self.what}, or \"\" {self.empty_means}"

    def parse(self, value: object, ctx: Context) -> str:
        if not isinstance(value, str):
            raise self.fail(value)
        if value == "":
            return ""
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = ctx.base_dir / path
        path = path.absolute()
        shown = "" if str(path) == value else f": {path}"
        if path.is_dir():
            raise self.fail(value, f" (that is a folder{shown})")
        if not path.is_file():
            raise self.fail(value, f" (no such file{shown})")
        return str(path)


_HOTKEY = re.compile(r"((Ctrl|Alt|Shift|Meta)\+)*(F([1-9]|1[0-2])|[A-Z0-9])")


@dataclass(frozen=True, slots=True)
class Hotkey(Rule):
    @property
    def allowed(self) -> str:
        return "a key such as \"F2\" or \"Ctrl+B\" (modifiers Ctrl, Alt, Shift, Meta; keys F1-F12, A-Z, 0-9)"

    def parse(self, value: object, ctx: Context) -> str:
        if not isinstance(value, str) or not _HOTKEY.fullmatch(value.strip()):
            raise self.fail(value)
        return value.strip()


@dataclass(frozen=True, slots=True)
class AnyText(Rule):
    @property
    def allowed(self) -> str:
        return "text in quotes"

    def parse(self, value: object, ctx: Context) -> str:
        if not isinstance(value, str):
            raise self.fail(value)
        return value.strip()


@dataclass(frozen=True, slots=True)
class OptionalUrl(Rule):
    """A URL with one of `schemes`, or "" for the default. Credentials in it are refused: keys live in the keyring."""

    schemes: tuple[str, ...]
    example: str

    @property
    def allowed(self) -> str:
        return f"a {' or '.join(self.schemes)} URL such as \"{self.example}\", or \"\" for the default address"

    def parse(self, value: object, ctx: Context) -> str:
        if not isinstance(value, str):
            raise self.fail(value)
        text = value.strip()
        if text == "":
            return ""
        parsed = urlsplit(text)
        # Credentials first: a URL carrying them must never be echoed back into a message or a log.
        if parsed.username or parsed.password or parsed.query or "@" in text:
            raise self.fail("(a URL with credentials or a query)", " (API keys belong in Settings → API keys, not in URLs)")
        if parsed.scheme not in self.schemes or not parsed.hostname:
            raise self.fail(value)
        return text.rstrip("/")


_EMAIL = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")


@dataclass(frozen=True, slots=True)
class Email(Rule):
    """One email address, or "" for none."""

    @property
    def allowed(self) -> str:
        return "an email address such as \"me@example.com\", or \"\" for none"

    def parse(self, value: object, ctx: Context) -> str:
        if not isinstance(value, str) or (value.strip() and not _EMAIL.fullmatch(value.strip())):
            raise self.fail(value)
        return value.strip()


@dataclass(frozen=True, slots=True)
class EmailList(Rule):
    @property
    def allowed(self) -> str:
        return "a list of email addresses such as [\"me@example.com\"] (may be empty)"

    def parse(self, value: object, ctx: Context) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(value)
        issues: list[Issue] = []
        out: dict[str, None] = {}
        for i, item in enumerate(value, start=1):
            if not isinstance(item, str) or not _EMAIL.fullmatch(item.strip()):
                issues.append(Issue(self.allowed, _show(item), where=f" (entry {i})"))
            else:
                out.setdefault(item.strip())
        if issues:
            raise Invalid(*issues)
        return tuple(out)

    def dump(self, value: Any) -> object:
        return list(value)


def setting(default: Any, rule: Rule, help: str) -> Any:
    """Declare one setting: its default, its rule and a line of help for the file's comments."""
    return field(default=default, metadata={"rule": rule, "help": help})


def table(cls: type, help: str = "") -> Any:
    """Declare a nested table (a dataclass of settings)."""
    return field(default_factory=cls, metadata={"table": cls, "help": help})


# --------------------------------------------------------------------------- the settings

DEFAULT_SYMBOLS: tuple[str, ...] = (
    "BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT",
    "ADA/USDT", "DOGE/USDT", "AVAX/USDT", "LINK/USDT", "DOT/USDT",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class WatchlistSettings:
    symbols: tuple[str, ...] = setting(
        DEFAULT_SYMBOLS, SymbolList(pairs_only=False),
        "the symbols in the watchlist, in order; ones no exchange lists (AAPL, EUR/USD, ^GSPC) are priced by [marketdata]")


@dataclass(frozen=True, slots=True)
class SimSettings:
    seed: int = setting(7, WholeNumber(0), "the same seed gives the same market")
    tick_interval_ms: int = setting(250, WholeNumber(20, 10000, "milliseconds"), "how often each symbol ticks")
    history_days: int = setting(5, WholeNumber(1, 30, "days"), "1m history generated at start")
    replay_file: str = setting(
        "",
        OptionalFile("JSON candle file ([[ms, open, high, low, close, volume], ...])", "to use the stochastic model"),
        "candles to replay instead of the stochastic model",
    )
    replay_symbol: str = setting("BTC/USDT", Symbol(), "the symbol the replayed candles are shown as")
    replay_speed: float = setting(
        60.0, Number(above=0, at_most=100000, unit="market seconds per wall-clock second"), "how fast replay_file plays"
    )

    @property
    def replay_path(self) -> Path | None:
        return Path(self.replay_file) if self.replay_file else None


@dataclass(frozen=True, slots=True)
class UiSettings:
    timeframe: str = setting("1m", Choice(tuple(TIMEFRAMES)), "the chart timeframe")
    refresh_hz: int = setting(30, WholeNumber(1, 60, "times per second"), "how often tables and charts repaint")
    buy_hotkey: str = setting("F2", Hotkey(), "opens the order ticket on Buy")
    sell_hotkey: str = setting("F3", Hotkey(), "opens the order ticket on Sell")


@dataclass(frozen=True, slots=True)
class ExchangeSettings:
    testnet: bool = setting(False, Flag(), "use the exchange's testnet/sandbox (MEXC has none)")
    rest_url: str = setting("", OptionalUrl(("http", "https"), "http://127.0.0.1:8080"), "replaces the exchange's REST base")
    ws_url: str = setting("", OptionalUrl(("ws", "wss"), "ws://127.0.0.1:8081/ws"), "replaces the exchange's websocket base")


@dataclass(frozen=True, slots=True)
class Mt5Settings:
    terminal_path: str = setting("", OptionalFile("terminal64.exe", "to let MetaTrader 5 find its running terminal"),
                                 "the MetaTrader 5 terminal to attach to")
    login: int = setting(0, WholeNumber(0), "the trading account number (0 = the account the terminal is logged into)")
    server: str = setting("", AnyText(), "the broker's trade server, e.g. 'MetaQuotes-Demo' (empty = the terminal's)")
    poll_ms: int = setting(250, WholeNumber(50, 10000, "milliseconds"), "how often prices are read from the terminal")


@dataclass(frozen=True, slots=True)
class VenuesSettings:
    binance: ExchangeSettings = table(ExchangeSettings, "Binance spot")
    gate: ExchangeSettings = table(ExchangeSettings, "Gate.io spot")
    mexc: ExchangeSettings = table(ExchangeSettings, "MEXC spot (no testnet)")
    mt5: Mt5Settings = table(Mt5Settings, "MetaTrader 5 (Windows only, beside a running terminal)")


@dataclass(frozen=True, slots=True)
class Limit(Rule):
    """A non-negative amount where 0 means 'no limit'."""

    unit: str

    @property
    def allowed(self) -> str:
        return f"a number of 0 or more ({self.unit}; 0 = no limit)"

    def parse(self, value: object, ctx: Context) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise self.fail(value)
        return float(value)


@dataclass(frozen=True, slots=True)
class RiskSettings:
    max_order_notional: float = setting(0.0, Limit("quote currency, e.g. USDT"), "the largest value one order may have")
    max_position_notional: float = setting(0.0, Limit("quote currency"), "the largest value held in one asset after a buy")
    max_daily_loss: float = setting(0.0, Limit("quote currency"), "stop opening orders after losing this much since 00:00 UTC")
    max_open_orders: int = setting(0, WholeNumber(0), "the most orders resting on the venue at once (0 = no limit)")


@dataclass(frozen=True, slots=True)
class PaperSettings:
    enabled: bool = setting(False, Flag(), "trade on paper: the venue's live prices, a local account, nothing sent")
    starting_usdt: float = setting(10_000.0, Number(above=0, at_most=1e12, unit="USDT"),
                                   "the paper account's balance when it starts or is reset")


@dataclass(frozen=True, slots=True)
class EmailSettings:
    host: str = setting("", AnyText(), "the SMTP server, e.g. 'smtp.example.com' (empty = email off)")
    port: int = setting(587, WholeNumber(1, 65535), "587 for STARTTLS, 465 for implicit TLS, 25 for none")
    security: str = setting("starttls", Choice(("starttls", "tls", "none")), "how the connection is encrypted")
    username: str = setting("", AnyText(), "the SMTP login (the password lives in the keyring)")
    sender: str = setting("", Email(), "the From address")
    recipients: tuple[str, ...] = setting((), EmailList(), "who receives alert emails")


@dataclass(frozen=True, slots=True)
class DiscordSettings:
    enabled: bool = setting(False, Flag(), "send alerts to Discord (webhook URL and bot token live in the keyring)")
    user_id: str = setting("", AnyText(), "a Discord user id for direct messages through the bot (empty = webhook only)")
    api_base: str = setting("", OptionalUrl(("http", "https"), "http://127.0.0.1:8090/api/v10"),
                            "replaces https://discord.com/api/v10 (a proxy or a local server)")


@dataclass(frozen=True, slots=True)
class SmsSettings:
    enabled: bool = setting(False, Flag(), "send SMS through Twilio (Pro plan; auth token in the keyring)")
    account_sid: str = setting("", AnyText(), "the Twilio account SID (AC...)")
    from_number: str = setting("", AnyText(), "the Twilio number messages come from, e.g. '+15005550006'")
    to_number: str = setting("", AnyText(), "your phone number, e.g. '+447700900123'")
    api_base: str = setting("", OptionalUrl(("http", "https"), "http://127.0.0.1:8091"),
                            "replaces https://api.twilio.com (a proxy or a local server)")


@dataclass(frozen=True, slots=True)
class DesktopNotifySettings:
    enabled: bool = setting(True, Flag(), "native desktop notifications and tray messages")
    minimise_to_tray: bool = setting(False, Flag(), "closing the window hides it in the tray instead of quitting")


@dataclass(frozen=True, slots=True)
class NotifySettings:
    desktop: DesktopNotifySettings = table(DesktopNotifySettings, "tray and desktop notifications")
    email: EmailSettings = table(EmailSettings, "email through SMTP")
    discord: DiscordSettings = table(DiscordSettings, "Discord webhook and direct messages")
    sms: SmsSettings = table(SmsSettings, "SMS through Twilio (optional)")


@dataclass(frozen=True, slots=True)
class BillingSettings:
    relay_url: str = setting("", OptionalUrl(("http", "https"), "https://relay.example.com"),
                             "the billing relay (empty = billing off)")


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    enabled: bool = setting(True, Flag(), "use this provider (one that needs a key is skipped until a key is set)")
    priority: int = setting(50, WholeNumber(0, 1000), "lower is asked first")
    base_url: str = setting("", OptionalUrl(("http", "https"), "http://127.0.0.1:8095"),
                            "replaces the provider's own address (a proxy or a local server)")


def _provider(priority: int) -> Any:
    return field(default_factory=lambda: ProviderSettings(priority=priority),
                 metadata={"table": ProviderSettings, "help": ""})


@dataclass(frozen=True, slots=True)
class MarketDataSettings:
    coinmarketcap: ProviderSettings = _provider(10)
    polygon: ProviderSettings = _provider(20)
    alphavantage: ProviderSettings = _provider(30)
    yahoo: ProviderSettings = _provider(40)
    ticker_ttl_s: int = setting(60, WholeNumber(1, 86400, "seconds"), "how long a provider's price is reused")
    metadata_ttl_s: int = setting(86400, WholeNumber(60, 30 * 86400, "seconds"), "how long market cap and rank are reused")


@dataclass(frozen=True, slots=True)
class Settings:
    venue: str = setting("sim", Name("sim"), "the venue the window opens on")
    watchlist: WatchlistSettings = table(WatchlistSettings)
    sim: SimSettings = table(SimSettings, "the simulated market")
    ui: UiSettings = table(UiSettings)
    venues: VenuesSettings = table(VenuesSettings, "exchanges; API keys are never here: they live in the OS keyring")
    paper: PaperSettings = table(PaperSettings, "paper trading")
    risk: RiskSettings = table(RiskSettings, "risk limits, checked before any order is sent")
    notify: NotifySettings = table(NotifySettings, "where alerts are sent; passwords and tokens live in the keyring")
    billing: BillingSettings = table(BillingSettings, "the Pro plan and points")
    marketdata: MarketDataSettings = table(MarketDataSettings, "stock, forex and index prices; provider keys live in the keyring")


class SettingsError(ValueError):
    """Settings data that does not pass validation; `problems` holds every sentence."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class SettingsLoad:
    settings: Settings
    problems: list[str]  # sentences for the user; empty when the file was fine or missing
    kept_aside: Path | None  # where a rejected file was moved


# --------------------------------------------------------------------------- dict <-> dataclasses


def settings_from_dict(data: Mapping[str, Any], *, base_dir: Path | None = None) -> Settings:
    """Validate parsed TOML data; raises `SettingsError` listing every problem."""
    problems: list[str] = []
    ctx = Context(base_dir=Path(base_dir) if base_dir is not None else Path.cwd())
    settings = _parse_table(Settings, data, "", ctx, problems)
    if problems:
        raise SettingsError(problems)
    return settings


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """Plain TOML-ready data (lists, not tuples) for `Settings` or any settings table."""
    out: dict[str, Any] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        out[f.name] = settings_to_dict(value) if "table" in f.metadata else f.metadata["rule"].dump(value)
    return out


def _parse_table(cls: type, data: Mapping[str, Any], prefix: str, ctx: Context, problems: list[str],
                 base: Any = None) -> Any:
    specs = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in specs:
            problems.append(_unknown_key(prefix, key, list(specs)))
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        if name not in data:
            continue
        key, raw = prefix + name, data[name]
        sub = spec.metadata.get("table")
        if sub is not None:
            if isinstance(raw, dict):
                # The table's own defaults (a provider's priority) survive keys the file leaves out.
                default = spec.default_factory() if callable(spec.default_factory) else None
                values[name] = _parse_table(sub, raw, key + ".", ctx, problems, default)
            else:
                problems.append(Issue(f"a table, written as [{key}] followed by its settings", raw).sentence(key))
            continue
        try:
            values[name] = spec.metadata["rule"].parse(raw, ctx)
        except Invalid as err:
            problems.extend(issue.sentence(key) for issue in err.issues)
    return replace(base, **values) if base is not None else cls(**values)


def _unknown_key(prefix: str, key: str, known: list[str]) -> str:
    where = f"in [{prefix[:-1]}]" if prefix else "at the top level"
    text = f"{prefix}{_key_text(key)} is not a known setting; the known keys {where} are: {', '.join(known)}."
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        text += f" Did you mean {prefix}{close[0]}?"
    return text + " Correct or remove it."


# --------------------------------------------------------------------------- files


_HEADER = """\
# Meridian Terminal settings.
# Edit this file while the app is closed. A file that fails validation is moved
# aside (settings.toml.invalid-<date>-<time>) and the defaults are used instead.
# Never put API keys here: they live in the operating system's keyring.

"""


def settings_to_toml(settings: Settings) -> str:
    """The file's text: each value with a comment saying what it does and what it accepts."""
    parts = [_HEADER]
    _write_table(settings, "", parts)
    return "".join(parts)


def _write_table(obj: Any, prefix: str, parts: list[str]) -> None:
    subtables = []
    for f in fields(obj):
        if "table" in f.metadata:
            subtables.append(f)
            continue
        rule: Rule = f.metadata["rule"]
        parts.append(f"# {f.metadata['help']}: {rule.allowed}\n")
        parts.append(tomli_w.dumps({f.name: rule.dump(getattr(obj, f.name))}))
    for f in subtables:
        name = prefix + f.name
        parts.append(f"\n[{name}]\n")
        if f.metadata["help"]:
            parts.append(f"# {f.metadata['help']}\n")
        _write_table(getattr(obj, f.name), name + ".", parts)


def load_settings(path: Path, *, now: Callable[[], datetime] = datetime.now) -> SettingsLoad:
    """Read and validate the settings file.

    Missing file: defaults, nothing written. Any problem: defaults, every
    problem listed, and the file moved aside (see `SettingsLoad.kept_aside`).
    """
    path = Path(path)
    if path.is_dir():
        problem = (
            f"The settings path {path} is a folder, not a file. "
            "Move the folder away or pass --config with a file path."
        )
        return SettingsLoad(Settings(), [problem], None)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return SettingsLoad(Settings(), [], None)
    except OSError as err:
        problems = [f"The settings file {path} could not be read ({err.strerror or err}). Check its permissions."]
    else:
        settings, problems = _parse_file(raw, path)
        if settings is not None:
            return SettingsLoad(settings, [], None)

    kept_aside: Path | None = None
    try:
        kept_aside = _keep_aside(path, now())
    except OSError as err:
        problems.append(
            f"The invalid settings file could not be moved aside ({err.strerror or err}); "
            f"rename or fix {path} yourself, or saving settings from the app will replace it."
        )
    log.warning("settings file %s rejected (kept as %s): %s", path, kept_aside, " | ".join(problems))
    return SettingsLoad(Settings(), problems, kept_aside)


def _parse_file(raw: bytes, path: Path) -> tuple[Settings | None, list[str]]:
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM some Windows editors add
    except UnicodeDecodeError as err:
        return None, [
            f"The settings file {path} is not UTF-8 text (byte {raw[err.start]:#04x} at position {err.start}). "
            "Save it with UTF-8 encoding."
        ]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        return None, [f"The settings file {path} is not valid TOML: {err}. Correct that line."]
    try:
        return settings_from_dict(data, base_dir=path.parent), []
    except SettingsError as err:
        return None, err.problems


def _keep_aside(path: Path, when: datetime) -> Path:
    stem = f"{path.name}.invalid-{when:%Y%m%d-%H%M%S}"
    for n in range(1, 1000):
        target = path.with_name(stem if n == 1 else f"{stem}-{n}")
        try:
            _move_no_clobber(path, target)
        except FileExistsError:
            continue
        return target
    raise FileExistsError(f"too many kept-aside settings files next to {path}")


def _move_no_clobber(src: Path, dst: Path) -> None:
    # os.rename silently replaces an existing target on POSIX; a hard link refuses to.
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network shares)
        if dst.exists():
            raise FileExistsError(dst) from None
        os.rename(src, dst)  # refuses to replace on Windows
        return
    os.unlink(src)


def save_settings(settings: Settings, path: Path) -> None:
    """Write the settings atomically; raises `SettingsError` (nothing written) if they are invalid.

    What is written is the normalised form, so `load_settings` returns an equal
    `Settings` for any valid, normalised input.
    """
    path = Path(path)
    checked = settings_from_dict(settings_to_dict(settings), base_dir=path.parent)
    data = settings_to_toml(checked).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened this way on Windows.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- helpers


def _show(value: object) -> str:
    """A value as the user would recognise it from TOML."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, float):
        text = "nan" if math.isnan(value) else repr(value)
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{_key_text(k)} = {_show(v)}" for k, v in value.items()) + "}"
    elif isinstance(value, datetime | date | time):
        text = value.isoformat()
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _key_text(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else repr(key)

