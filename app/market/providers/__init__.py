"""Market-data providers: CoinMarketCap, Yahoo Finance, Alpha Vantage and Polygon.

Each has a name, a priority (lower is asked first), the capabilities it can serve
(ticker, OHLCV, metadata) per asset class, pure response mappers, and a small async
client whose every request goes through its `Guard` (group `marketdata:<name>`).

    guards = GuardRegistry(bus, {**GUARD_CONFIGS, **user_overrides})
    providers = create_providers({"coinmarketcap": key1, "polygon": key2}, guards=guards)
    ticker = await providers[0].fetch_ticker("BTC/USD")

A provider that needs a key and has none is skipped by `create_providers` (and, if
built anyway, reports `configured == False` and raises `NotConfigured` without
sending anything). See base.py for the symbols, the errors and the decisions they share.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from app.market.providers.alphavantage import AlphaVantage
from app.market.providers.base import (
    AssetClass,
    AuthError,
    BadResponse,
    BudgetExhausted,
    Capability,
    HttpClient,
    HttpReply,
    Instrument,
    NotAvailable,
    NotConfigured,
    Provider,
    ProviderBase,
    ProviderError,
    RateLimited,
    RequestBudget,
    SymbolInfo,
    SymbolNotFound,
    Unavailable,
    loads,
    parse_symbol,
    to_decimal,
)
from app.market.providers.coinmarketcap import CoinMarketCap
from app.market.providers.polygon import Polygon
from app.market.providers.yahoo import Yahoo
from app.resilience.guard import GuardConfig, GuardRegistry

__all__ = [
    "GUARD_CONFIGS",
    "PROVIDERS",
    "AlphaVantage",
    "AssetClass",
    "AuthError",
    "BadResponse",
    "BudgetExhausted",
    "Capability",
    "CoinMarketCap",
    "HttpClient",
    "HttpReply",
    "Instrument",
    "NotAvailable",
    "NotConfigured",
    "Polygon",
    "Provider",
    "ProviderBase",
    "ProviderError",
    "RateLimited",
    "RequestBudget",
    "SymbolInfo",
    "SymbolNotFound",
    "Unavailable",
    "Yahoo",
    "create_providers",
    "loads",
    "parse_symbol",
    "to_decimal",
]

log = logging.getLogger(__name__)

PROVIDERS: dict[str, type[ProviderBase]] = {cls.name: cls for cls in (CoinMarketCap, Polygon, AlphaVantage, Yahoo)}
"""Every provider class by name."""

GUARD_CONFIGS: dict[str, GuardConfig] = {f"marketdata:{cls.name}": cls.guard_config for cls in PROVIDERS.values()}
"""Each provider's guard settings, seeded from its published free-plan limits. Hand them
to the GuardRegistry (a registry without them would give every provider its default
10 requests a second, which Alpha Vantage and Polygon answer with rate-limit errors)."""


def create_providers(
    keys: Mapping[str, str | None],
    *,
    guards: GuardRegistry | None = None,
    base_urls: Mapping[str, str] | None = None,
    priorities: Mapping[str, int] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    session: aiohttp.ClientSession | None = None,
    enabled: frozenset[str] | None = None,
) -> list[ProviderBase]:
    """The providers that can work, sorted by priority (then name).

    `keys` maps a provider's name to its API key; one that needs a key and has none
    is skipped (logged once, by name only). `options` passes provider-specific
    arguments (e.g. {"alphavantage": {"daily_limit": None}} for a premium key).
    `enabled` limits the result to those names.
    """
    created: list[ProviderBase] = []
    for name, cls in PROVIDERS.items():
        if enabled is not None and name not in enabled:
            continue
        key = (keys.get(name) or "").strip() or None
        if cls.requires_key and key is None:
            log.info("market data: %s has no API key and is skipped", cls.title)
            continue
        kwargs: dict[str, Any] = dict((options or {}).get(name, {}))
        if base_urls and name in base_urls:
            kwargs["base_url"] = base_urls[name]
        if priorities and name in priorities:
            kwargs["priority"] = priorities[name]
        if guards is not None:
            kwargs["guard"] = guards.get(f"marketdata:{name}")
        created.append(cls(key, session=session, **kwargs))
    created.sort(key=lambda p: (p.priority, p.name))
    return created
