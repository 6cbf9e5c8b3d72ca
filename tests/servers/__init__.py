"""Local servers on 127.0.0.1 that speak Binance, Gate.io and MEXC spot REST and websocket.

    async with BinanceServer() as srv:          # or GateServer(), MexcServer()
        exchange = srv.configure(ccxt.binance())  # rewrites exchange.urls and options, sets test keys
        srv.faults.next_status(500, times=3)      # REST faults; srv.ws_faults for streams
        srv.requests                              # what ccxt sent: paths and parameter names only

See base.py for what they share and each venue module for its ccxt settings.
"""

from tests.servers.base import API_KEY, API_SECRET, RequestRecord, VenueServer, WsEvent
from tests.servers.binance import BinanceServer
from tests.servers.gate import GateServer
from tests.servers.mexc import MexcServer

__all__ = ["API_KEY", "API_SECRET", "BinanceServer", "GateServer", "MexcServer", "RequestRecord", "VenueServer",
           "WsEvent"]
