"""Pure websocket frame codecs, one per venue: frame -> domain events, and the
messages a connection sends (subscribe, application ping).

`MexcCodec` is imported lazily: its protobuf schemas come from ccxt, whose
package import takes most of a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app.streams.codecs.common import FrameCodec, MalformedFrame, StreamError

if TYPE_CHECKING:
    from app.streams.codecs.binance import BinanceCodec
    from app.streams.codecs.gate import GateCodec
    from app.streams.codecs.mexc import MexcCodec

__all__ = ["BinanceCodec", "FrameCodec", "GateCodec", "MalformedFrame", "MexcCodec", "StreamError", "codec_for"]

_CLASSES = {
    "BinanceCodec": ("app.streams.codecs.binance", "binance"),
    "GateCodec": ("app.streams.codecs.gate", "gate"),
    "MexcCodec": ("app.streams.codecs.mexc", "mexc"),
}


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        import importlib

        return getattr(importlib.import_module(_CLASSES[name][0]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def codec_for(venue: str, symbols: Mapping[str, str]) -> FrameCodec:
    """The codec for `venue` ("binance", "gate", "mexc"), built with its market id -> symbol map."""
    for name, (_, venue_name) in _CLASSES.items():
        if venue_name == venue:
            return __getattr__(name)(symbols)  # type: ignore[no-any-return]
    raise ValueError(f"no stream codec for venue {venue!r}: use one of binance, gate, mexc")
