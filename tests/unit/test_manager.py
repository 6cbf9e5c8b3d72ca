"""The venue manager: validated adds, and a comparison that survives failing venues."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from app.venues.base import VenueError, VenueUnavailable
from app.venues.manager import VenueManager
from app.venues.sim import SimConfig, SimVenue


def sim(name: str, seed: int) -> SimVenue:
    venue = SimVenue(SimConfig(seed=seed, history_days=1))
    venue.name = name
    return venue


class Broken(SimVenue):
    async def fetch_ticker(self, symbol: str):  # type: ignore[override]
        raise VenueUnavailable("Broken cannot be reached (connection refused); check your connection.")


class Hanging(SimVenue):
    async def load_markets(self):  # type: ignore[override]
        await asyncio.sleep(60)
        return {}


async def test_compare_ranks_venues_and_tolerates_failures() -> None:
    manager = VenueManager(timeout=0.5)
    await manager.add(sim("alpha", 1))
    await manager.add(sim("beta", 2))
    broken = Broken(SimConfig(seed=3, history_days=1))
    broken.name = "broken"
    await manager.add(broken)
    quotes = {q.venue: q for q in await manager.compare("BTC/USDT")}
    assert set(quotes) == {"alpha", "beta", "broken"}
    assert quotes["broken"].ticker is None and "connection refused" in quotes["broken"].error
    good = [quotes["alpha"], quotes["beta"]]
    best_ask = min(q.ticker.ask for q in good)
    best_bid = max(q.ticker.bid for q in good)
    for q in good:
        assert q.error == ""
        assert (q.buy_vs_best_bps == 0) == (q.ticker.ask == best_ask)
        assert (q.sell_vs_best_bps == 0) == (q.ticker.bid == best_bid)
        assert q.spread_bps is not None and q.spread_bps >= 0
        expected = (q.ticker.ask - best_ask) / best_ask * 10_000
        assert abs(q.buy_vs_best_bps - expected) <= Decimal("0.05")
    await manager.close()


async def test_unlisted_symbol_and_slow_venue_become_rows_not_errors() -> None:
    manager = VenueManager(timeout=0.3)
    await manager.add(sim("alpha", 1))
    manager.venues["slow"] = Hanging(SimConfig(seed=4, history_days=1))  # added earlier, hangs now
    quotes = {q.venue: q for q in await manager.compare("NOPE/USDT")}
    assert quotes["alpha"].error == "does not list NOPE/USDT"
    assert "no answer within" in quotes["slow"].error
    await manager.close()


async def test_add_validates_the_connection_and_refuses_a_silent_venue() -> None:
    manager = VenueManager(timeout=0.2)
    slow = Hanging(SimConfig(seed=4, history_days=1))
    with pytest.raises(VenueError, match="did not answer within"):
        await manager.add(slow)
    assert manager.venues == {}
