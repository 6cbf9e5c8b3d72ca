"""Connected venues: added after a check that they answer, and compared side by side.

`compare(symbol)` asks every venue that lists the symbol at once; a venue that
fails or is slow becomes a row with its reason instead of holding up the others.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import Decimal

from app.domain import Ticker
from app.venues.base import Venue, VenueError

log = logging.getLogger(__name__)
BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class VenueQuote:
    venue: str
    ticker: Ticker | None
    error: str = ""
    spread_bps: Decimal | None = None  # the venue's own ask-bid, in basis points of its mid
    buy_vs_best_bps: Decimal | None = None  # how much dearer its ask is than the lowest ask (0 = best to buy)
    sell_vs_best_bps: Decimal | None = None  # how much cheaper its bid is than the highest bid (0 = best to sell)


class VenueManager:
    def __init__(self, timeout: float = 5.0) -> None:
        self.venues: dict[str, Venue] = {}
        self.timeout = timeout

    async def add(self, venue: Venue) -> None:
        """Check the venue answers (balance with keys, markets without), then hold it."""
        has_keys = bool(getattr(getattr(venue, "config", None), "api_key", ""))
        try:
            if has_keys:
                await asyncio.wait_for(venue.fetch_balance(), self.timeout)
            else:
                await asyncio.wait_for(venue.load_markets(), self.timeout)
        except TimeoutError:
            await venue.close()
            raise VenueError(f"{_title(venue)} did not answer within {self.timeout:.0f} s; it was not added.") from None
        except BaseException:
            await venue.close()  # a venue that failed its check is not kept, nor left with open sockets
            raise
        old = self.venues.pop(venue.name, None)
        if old is not None:
            await old.close()
        self.venues[venue.name] = venue

    async def remove(self, name: str) -> None:
        venue = self.venues.pop(name, None)
        if venue is not None:
            await venue.close()

    async def compare(self, symbol: str) -> list[VenueQuote]:
        names = list(self.venues)
        results = await asyncio.gather(*(self._quote(n, self.venues[n], symbol) for n in names))
        tickers = [q.ticker for q in results if q.ticker is not None]
        asks = [t.ask for t in tickers if t.ask]
        bids = [t.bid for t in tickers if t.bid]
        best_ask = min(asks) if asks else None
        best_bid = max(bids) if bids else None
        out = []
        for q in results:
            t = q.ticker
            if t is None:
                out.append(q)
                continue
            spread = vs_buy = vs_sell = None
            if t.bid and t.ask:
                mid = (t.bid + t.ask) / 2
                spread = ((t.ask - t.bid) / mid * BPS).quantize(Decimal("0.01"))
            if t.ask and best_ask:
                vs_buy = ((t.ask - best_ask) / best_ask * BPS).quantize(Decimal("0.01"))
            if t.bid and best_bid:
                vs_sell = ((best_bid - t.bid) / best_bid * BPS).quantize(Decimal("0.01"))
            out.append(VenueQuote(q.venue, t, "", spread, vs_buy, vs_sell))
        return out

    async def _quote(self, name: str, venue: Venue, symbol: str) -> VenueQuote:
        try:
            markets = await asyncio.wait_for(venue.load_markets(), self.timeout)
            if symbol not in markets:
                return VenueQuote(name, None, f"does not list {symbol}")
            return VenueQuote(name, await asyncio.wait_for(venue.fetch_ticker(symbol), self.timeout))
        except TimeoutError:
            return VenueQuote(name, None, f"no answer within {self.timeout:.0f} s")
        except VenueError as exc:
            return VenueQuote(name, None, str(exc))
        except Exception as exc:  # one venue's bug must not hide the others' prices
            log.exception("quote from %s failed", venue.name)
            return VenueQuote(name, None, f"failed ({type(exc).__name__})")

    async def close(self) -> None:
        for name in list(self.venues):
            await self.remove(name)


def _title(venue: Venue) -> str:
    return str(getattr(venue, "title", venue.name))
