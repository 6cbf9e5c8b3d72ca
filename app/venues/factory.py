"""Builds venues by name. Builders import their modules lazily: ccxt is slow to import,
and MetaTrader 5 exists only on Windows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.venues.base import Venue, VenueError


class UnknownVenue(VenueError):
    pass


def _sim(config: Any, bus: Any = None) -> Venue:
    from app.venues.sim import SimConfig, SimVenue

    return SimVenue(config if isinstance(config, SimConfig) else SimConfig())


def _exchange(module: str, cls: str) -> Callable[..., Venue]:
    def build(config: Any, bus: Any = None) -> Venue:
        import importlib

        from app.venues.ccxt_venue import ExchangeConfig

        venue_cls = getattr(importlib.import_module(f"app.venues.{module}"), cls)
        return venue_cls(config if isinstance(config, ExchangeConfig) else ExchangeConfig(), bus=bus)

    return build


def _mt5(config: Any, bus: Any = None) -> Venue:
    from app.venues.mt5 import MT5Venue

    return MT5Venue(config, bus=bus) if config is not None else MT5Venue(bus=bus)


_BUILDERS: dict[str, Callable[..., Venue]] = {
    "sim": _sim,
    "binance": _exchange("binance", "BinanceVenue"),
    "gate": _exchange("gate", "GateVenue"),
    "mexc": _exchange("mexc", "MexcVenue"),
    "mt5": _mt5,
}

TITLES = {"sim": "Simulated market", "binance": "Binance", "gate": "Gate.io", "mexc": "MEXC", "mt5": "MetaTrader 5"}


def supported() -> list[str]:
    return sorted(_BUILDERS)


def create(name: str, config: Any = None, *, bus: Any = None) -> Venue:
    """Build the venue called `name`; an unknown name is an error listing the supported ones.

    `bus` receives the venue's guard health events (breaker state changes)."""
    key = name.strip().lower()
    builder = _BUILDERS.get(key)
    if builder is None:
        raise UnknownVenue(f"There is no venue called '{name}'. Supported venues: {', '.join(supported())}.")
    return builder(config, bus)
