"""Meridian Terminal core: plain Python and asyncio. Never imports Qt."""

__version__ = "0.1.0"
