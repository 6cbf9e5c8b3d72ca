"""The stochastic price model behind the simulated market.

Per minute, each instrument's log return is

    r = sqrt(h) * (rho * z_market + sqrt(1 - rho^2) * z_own) + jump

where `h` follows GARCH(1,1) (quiet and wild hours cluster, as real crypto
does), `z_market` is shared by every instrument (alts move with BTC) and jumps
arrive as a Poisson process a few times a day. Everything is vectorised over
instruments and driven by one seeded `numpy.random.Generator`, so the same seed
and the same sequence of calls give the same market, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np

MINUTES_PER_YEAR = 365 * 24 * 60

# GARCH(1,1) on one-minute returns: persistence alpha+beta close to 1 gives the
# hours-long volatility clusters seen in real crypto minute data.
GARCH_ALPHA = 0.06
GARCH_BETA = 0.92
JUMPS_PER_DAY = 3.0
JUMP_SIZE_SIGMAS = 6.0  # a jump is this many typical one-minute moves


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    start_price: float
    annual_vol: float
    daily_quote_volume: float  # in quote currency, sets the size of volume bars and trades
    market_corr: float  # correlation with the common market factor
    price_tick: Decimal
    amount_step: Decimal
    min_amount: Decimal
    min_notional: Decimal = Decimal("5")
    activity: float = 1.0  # chance that a live tick carries a trade

    @property
    def minute_variance(self) -> float:
        return self.annual_vol**2 / MINUTES_PER_YEAR


def _i(symbol: str, price: float, vol: float, qvol: float, corr: float, tick: str, step: str, activity: float) -> Instrument:
    return Instrument(symbol, price, vol, qvol, corr, Decimal(tick), Decimal(step), Decimal(step), activity=activity)


# Plausible levels, volatilities and turnover for liquid USDT pairs.
DEFAULT_INSTRUMENTS: tuple[Instrument, ...] = (
    _i("BTC/USDT", 95_000.0, 0.55, 2.4e9, 1.00, "0.01", "0.00001", 1.0),
    _i("ETH/USDT", 3_400.0, 0.70, 1.2e9, 0.85, "0.01", "0.0001", 1.0),
    _i("SOL/USDT", 180.0, 0.90, 5.0e8, 0.75, "0.01", "0.001", 0.9),
    _i("BNB/USDT", 650.0, 0.55, 2.0e8, 0.70, "0.01", "0.001", 0.8),
    _i("XRP/USDT", 2.20, 0.85, 3.0e8, 0.65, "0.0001", "0.1", 0.8),
    _i("ADA/USDT", 0.75, 0.85, 1.0e8, 0.65, "0.0001", "0.1", 0.6),
    _i("DOGE/USDT", 0.25, 1.00, 2.0e8, 0.65, "0.00001", "1", 0.7),
    _i("AVAX/USDT", 35.0, 0.95, 6.0e7, 0.70, "0.01", "0.01", 0.6),
    _i("LINK/USDT", 20.0, 0.90, 8.0e7, 0.70, "0.001", "0.01", 0.6),
    _i("DOT/USDT", 6.5, 0.85, 4.0e7, 0.70, "0.001", "0.01", 0.5),
)


@dataclass(frozen=True, slots=True)
class MinuteBars:
    """Generated one-minute history: arrays shaped (minutes, instruments)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # in base currency


class PriceModel:
    """Advances every instrument's price; vectorised over instruments."""

    def __init__(self, instruments: tuple[Instrument, ...], rng: np.random.Generator) -> None:
        self.instruments = instruments
        self.rng = rng
        n = len(instruments)
        self.long_run_var = np.array([i.minute_variance for i in instruments])
        self.omega = self.long_run_var * (1.0 - GARCH_ALPHA - GARCH_BETA)
        self.var = self.long_run_var.copy()  # current one-minute variance
        self.corr = np.array([i.market_corr for i in instruments])
        self.idio = np.sqrt(1.0 - self.corr**2)
        self.log_price = np.log(np.array([i.start_price for i in instruments]))
        # Mean base volume per minute at the starting price.
        self.minute_volume = np.array([i.daily_quote_volume / 1440.0 / i.start_price for i in instruments])
        self._minute_open = self.log_price.copy()  # log price at the start of the current minute
        self._price_scale_base = np.array([i.start_price for i in instruments])
        self._activity = np.array([i.activity for i in instruments])
        self._n = n

    @property
    def prices(self) -> np.ndarray:
        return np.exp(self.log_price)

    def history(self, minutes: int) -> MinuteBars:
        """Generate `minutes` of one-minute bars, advancing the model to their end."""
        n = self._n
        closes = np.empty((minutes, n))
        opens = np.empty((minutes, n))
        sigmas = np.empty((minutes, n))
        z_market = self.rng.standard_normal((minutes, 1))
        z_own = self.rng.standard_normal((minutes, n))
        z = z_market * self.corr + z_own * self.idio
        jump_hit = self.rng.random((minutes, n)) < JUMPS_PER_DAY / 1440.0
        jump_size = self.rng.standard_normal((minutes, n)) * JUMP_SIZE_SIGMAS
        var = self.var
        lp = self.log_price
        # GARCH is a recursion: one short Python loop over minutes, vectorised over instruments.
        for t in range(minutes):
            sigma = np.sqrt(var)
            r = sigma * z[t] + jump_hit[t] * jump_size[t] * np.sqrt(self.long_run_var)
            opens[t] = lp
            lp = lp + r
            closes[t] = lp
            sigmas[t] = sigma
            var = self.omega + GARCH_ALPHA * r * r + GARCH_BETA * var
        self.var = var
        self.log_price = lp
        self._minute_open = lp.copy()
        # Intra-minute extremes: a half-normal excursion beyond the body, scaled by that minute's volatility.
        up = np.abs(self.rng.standard_normal((minutes, n))) * sigmas * 0.6
        down = np.abs(self.rng.standard_normal((minutes, n))) * sigmas * 0.6
        high = np.maximum(opens, closes) + up
        low = np.minimum(opens, closes) - down
        # Volume rises with the size of the move relative to its volatility, as it does on real tape.
        move = np.abs(closes - opens) / sigmas
        noise = np.exp(self.rng.standard_normal((minutes, n)) * 0.45 - 0.1)
        price_scale = np.exp(closes) / self._price_scale_base
        volume = self.minute_volume / price_scale * noise * (0.55 + 0.45 * move)
        return MinuteBars(np.exp(opens), np.exp(high), np.exp(low), np.exp(closes), volume)

    def step(self, dt_seconds: float) -> np.ndarray:
        """Advance every instrument by `dt_seconds`; return the new prices."""
        frac = max(dt_seconds, 0.0) / 60.0
        z = self.rng.standard_normal() * self.corr + self.rng.standard_normal(self._n) * self.idio
        jump = (self.rng.random(self._n) < JUMPS_PER_DAY / 1440.0 * frac) * self.rng.standard_normal(self._n)
        r = np.sqrt(self.var * frac) * z + jump * JUMP_SIZE_SIGMAS * np.sqrt(self.long_run_var)
        self.log_price = self.log_price + r
        return self.prices

    def roll_minute(self) -> None:
        """Close the model's minute: feed the realised minute return into GARCH."""
        r = self.log_price - self._minute_open
        self.var = self.omega + GARCH_ALPHA * r * r + GARCH_BETA * self.var
        self._minute_open = self.log_price.copy()

    def trade_sizes(self, dt_seconds: float) -> np.ndarray:
        """Random trade sizes (base currency) so that volume per minute matches the instrument's turnover."""
        price_scale = self.prices / self._price_scale_base
        # Only a fraction `activity` of ticks trade, so each trade is larger by 1/activity.
        mean = self.minute_volume / price_scale * (dt_seconds / 60.0) / self._activity
        return self.rng.exponential(1.0, self._n) * mean

    def trades_happen(self) -> np.ndarray:
        """Which instruments print a trade on this tick (illiquid ones tick less often)."""
        return self.rng.random(self._n) < self._activity
