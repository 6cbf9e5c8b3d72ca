"""Builds venues by name. Real exchanges join this table in later work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.venues.base import Venue, VenueError
from app.venues.sim import SimConfig, SimVenue

_BUILDERS: dict[str, Callable[[Any], Venue]] = {
    "sim": lambda config: SimVenue(config if isinstance(config, SimConfig) else SimConfig()),
}


class UnknownVenue(VenueError):
    pass


def supported() -> list[str]:
    return sorted(_BUILDERS)


def create(name: str, config: Any = None) -> Venue:
    """Build the venue called `name`; an unknown name is an error listing the supported ones."""
    key = name.strip().lower()
    builder = _BUILDERS.get(key)
    if builder is None:
        raise UnknownVenue(f"There is no venue called '{name}'. Supported venues: {', '.join(supported())}.")
    return builder(config)
