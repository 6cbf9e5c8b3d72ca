"""The providers' pure response mappers, fed bodies shaped exactly like each provider's
documented responses (success, error and empty), as the raw text the provider sends.

Sources of the shapes are in each module's docstring (app/market/providers/*.py).
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app.domain import Candle, Ticker
from app.market.providers import alphavantage as av
from app.market.providers import coinmarketcap as cmc
from app.market.providers import polygon as pg
from app.market.providers import yahoo as yh
from app.market.providers.base import (
    AssetClass,
    AuthError,
    BadResponse,
    BudgetExhausted,
    Capability,
    HttpReply,
    NotAvailable,
    ProviderError,
    RateLimited,
    RequestBudget,
    SymbolNotFound,
    Unavailable,
    loads,
    parse_symbol,
    seconds_until_reset,
    to_decimal,
    trim_candles,
)
from app.resilience.errors import FailureKind, classify


def body(text: str) -> object:
    return loads(text)


def assert_decimals(*values: object) -> None:
    for value in values:
        assert value is None or type(value) is Decimal, f"{value!r} is not a Decimal"


def assert_sentence(exc: BaseException) -> None:
    text = str(exc)
    assert text[:1].isupper() or text[:1] == "'", text
    assert text.rstrip().endswith((".", ")")), text
    assert "Traceback" not in text and "{" not in text


# =========================================================================== shared


class TestSymbols:
    @pytest.mark.parametrize(
        ("symbol", "asset_class", "base", "quote"),
        [
            ("BTC/USD", AssetClass.CRYPTO, "BTC", "USD"),
            ("btc/usdt", AssetClass.CRYPTO, "BTC", "USDT"),
            ("EUR/USD", AssetClass.FOREX, "EUR", "USD"),
            ("USD/JPY", AssetClass.FOREX, "USD", "JPY"),
            ("AAPL", AssetClass.STOCK, "AAPL", ""),
            ("BRK.B", AssetClass.STOCK, "BRK.B", ""),
            ("^GSPC", AssetClass.INDEX, "^GSPC", ""),
        ],
    )
    def test_parse(self, symbol: str, asset_class: AssetClass, base: str, quote: str) -> None:
        inst = parse_symbol(symbol)
        assert (inst.asset_class, inst.base, inst.quote) == (asset_class, base, quote)

    @pytest.mark.parametrize("symbol", ["", "BTC/", "/USD", "BTC/USD/EUR", "A B", "^", "BTC-USD?x=1"])
    def test_not_a_symbol_is_a_sentence(self, symbol: str) -> None:
        with pytest.raises(SymbolNotFound) as err:
            parse_symbol(symbol)
        assert "BASE/QUOTE" in str(err.value)
        assert_sentence(err.value)

    @pytest.mark.parametrize(
        ("symbol", "yahoo", "polygon"),
        [
            ("BTC/USD", "BTC-USD", "X:BTCUSD"),
            ("EUR/USD", "EURUSD=X", "C:EURUSD"),
            ("AAPL", "AAPL", "AAPL"),
            ("BRK.B", "BRK-B", "BRK.B"),
            ("VOD.L", "VOD.L", "VOD.L"),
            ("^GSPC", "^GSPC", "I:SPX"),
            ("^IXIC", "^IXIC", "I:COMP"),
            ("^FTSE", "^FTSE", "I:FTSE"),
        ],
    )
    def test_provider_symbols(self, symbol: str, yahoo: str, polygon: str) -> None:
        inst = parse_symbol(symbol)
        assert yh.yahoo_symbol(inst) == yahoo
        assert pg.polygon_ticker(inst) == polygon

    def test_yahoo_path_is_url_encoded(self) -> None:
        assert yh.chart_path(parse_symbol("^GSPC")) == "/v8/finance/chart/%5EGSPC"
        assert yh.chart_path(parse_symbol("EUR/USD")) == "/v8/finance/chart/EURUSD=X"

    def test_coinmarketcap_and_alphavantage_requests(self) -> None:
        assert cmc.quote_params(parse_symbol("ETH/EUR")) == {"symbol": "ETH", "convert": "EUR"}
        assert av.request_params(parse_symbol("IBM"), Capability.TICKER) == {"function": "GLOBAL_QUOTE", "symbol": "IBM"}
        assert av.request_params(parse_symbol("EUR/USD"), Capability.TICKER) == {
            "function": "CURRENCY_EXCHANGE_RATE", "from_currency": "EUR", "to_currency": "USD"}
        assert av.request_params(parse_symbol("IBM"), Capability.OHLCV, "1h") == {
            "function": "TIME_SERIES_INTRADAY", "symbol": "IBM", "interval": "60min", "outputsize": "compact"}
        assert av.request_params(parse_symbol("EUR/USD"), Capability.OHLCV, "1d", full=True) == {
            "function": "FX_DAILY", "from_symbol": "EUR", "to_symbol": "USD", "outputsize": "full"}

    def test_polygon_paths(self) -> None:
        assert pg.aggregates_path(parse_symbol("BTC/USD"), "5m", 1, 2) == "/v2/aggs/ticker/X:BTCUSD/range/5/minute/1/2"
        assert pg.last_path(parse_symbol("AAPL")) == "/v2/last/trade/AAPL"
        assert pg.last_path(parse_symbol("BTC/USD")) == "/v1/last/crypto/BTC/USD"
        assert pg.last_path(parse_symbol("EUR/USD")) == "/v1/last_quote/currencies/EUR/USD"


class TestNumbers:
    def test_loads_keeps_every_digit(self) -> None:
        decoded = loads('{"p": 29705.93501696529, "v": 70790813, "s": "0.00000001"}')
        assert decoded["p"] == Decimal("29705.93501696529") and type(decoded["p"]) is Decimal
        assert to_decimal(decoded["v"], "v") == Decimal(70790813)
        assert to_decimal(decoded["s"], "s") == Decimal("0.00000001")

    def test_a_float_is_a_programming_error_not_a_price(self) -> None:
        with pytest.raises(TypeError, match="loads"):
            to_decimal(0.1, "price")

    @pytest.mark.parametrize("text", ['{"p": NaN}', '{"p": Infinity}', '{"p": 1', "<html>502</html>", ""])
    def test_not_json_or_not_finite_is_a_bad_response(self, text: str) -> None:
        with pytest.raises(BadResponse) as err:
            loads(text, title="Polygon")
        assert err.value.__context__ is None  # the decode error (which holds the body) is not chained
        assert classify(err.value) is FailureKind.UNHEALTHY

    @pytest.mark.parametrize("value", [None, True, "abc", "NaN", [], {}])
    def test_unreadable_numbers(self, value: object) -> None:
        with pytest.raises(BadResponse):
            to_decimal(value, "price")

    def test_trim_candles(self) -> None:
        rows = [Candle(t, Decimal(1), Decimal(1), Decimal(1), Decimal(t), Decimal(0)) for t in (3, 1, 2, 2, 4)]
        assert [c.ts for c in trim_candles(rows, None, 2)] == [3, 4]
        assert [c.ts for c in trim_candles(rows, 2, 2)] == [2, 3]
        assert [c.ts for c in trim_candles(rows, None, None)] == [1, 2, 3, 4]

    def test_seconds_until_reset(self) -> None:
        now = 1716508800 + 3600  # 2024-05-24 01:00 UTC
        assert seconds_until_reset("minute", now) == 60
        assert seconds_until_reset("day", now) == 23 * 3600
        assert seconds_until_reset("month", 1716508800) == (1717200000 - 1716508800)  # to 2024-06-01
        assert seconds_until_reset(None, now) is None

    def test_request_budget_counts_a_utc_day(self) -> None:
        clock = [1716508800.0]
        budget = RequestBudget(2, title="Alpha Vantage", wall=lambda: clock[0])
        budget.take()
        budget.take()
        with pytest.raises(BudgetExhausted) as err:
            budget.take()
        assert err.value.retry_after == 86400 and "after 00:00 UTC" in str(err.value)
        assert classify(err.value) is FailureKind.REJECTED  # our own refusal: not counted by the breaker
        clock[0] += 86400
        budget.take()
        assert budget.remaining == 1


# =========================================================================== CoinMarketCap

CMC_QUOTES_BTC = """{
  "status": {"timestamp": "2022-06-01T21:26:41.284Z", "error_code": 0, "error_message": null,
             "elapsed": 31, "credit_count": 1, "notice": null},
  "data": {"BTC": [{
    "id": 1, "name": "Bitcoin", "symbol": "BTC", "slug": "bitcoin", "num_market_pairs": 9550,
    "date_added": "2013-04-28T00:00:00.000Z",
    "tags": [{"slug": "mineable", "name": "Mineable", "category": "OTHERS"}],
    "max_supply": 21000000, "circulating_supply": 19055662, "total_supply": 19055662, "is_active": 1,
    "platform": null, "cmc_rank": 1, "is_fiat": 0, "self_reported_circulating_supply": null,
    "self_reported_market_cap": null, "last_updated": "2022-06-01T21:26:00.000Z",
    "quote": {"USD": {"price": 29705.93501696529, "volume_24h": 39782528268.71518, "volume_change_24h": 9.2595,
                      "percent_change_1h": -0.98631865, "percent_change_24h": -6.48106206,
                      "percent_change_7d": -0.18375664, "percent_change_30d": -22.83264803,
                      "percent_change_60d": -35.56666606, "percent_change_90d": -29.38831116,
                      "market_cap": 566066257077.2549, "market_cap_dominance": 46.0844,
                      "fully_diluted_market_cap": 623824635356.27, "last_updated": "2022-06-01T21:26:00.000Z"}}
  }]}
}"""

# Two coins share the symbol ETC: the first listed is a dead token (the case in
# blockscout/blockscout#7932, which took the first result and showed the wrong price).
CMC_QUOTES_ETC = """{
  "status": {"timestamp": "2023-07-13T19:19:08.554Z", "error_code": 0, "error_message": null,
             "elapsed": 29, "credit_count": 1, "notice": null},
  "data": {"ETC": [
    {"id": 646, "name": "Ethercoin", "symbol": "ETC", "slug": "ethercoin", "num_market_pairs": 0,
     "date_added": "2014-10-03T00:00:00.000Z", "tags": [], "max_supply": null,
     "circulating_supply": 1000000.00069903, "total_supply": 1000000.00069903, "is_active": 1,
     "infinite_supply": false, "platform": null, "cmc_rank": 3011, "is_fiat": 0,
     "self_reported_circulating_supply": null, "self_reported_market_cap": null, "tvl_ratio": null,
     "last_updated": "2023-07-13T19:18:00.000Z",
     "quote": {"USD": {"price": 0.000316251, "volume_24h": 0, "volume_change_24h": 0, "percent_change_1h": 0,
                       "percent_change_24h": 0, "percent_change_7d": 0, "market_cap": 0,
                       "market_cap_dominance": 0, "fully_diluted_market_cap": 316.25, "tvl": null,
                       "last_updated": "2023-07-13T19:18:00.000Z"}}},
    {"id": 1321, "name": "Ethereum Classic", "symbol": "ETC", "slug": "ethereum-classic", "num_market_pairs": 380,
     "date_added": "2016-07-24T00:00:00.000Z", "tags": ["pow"], "max_supply": 210700000,
     "circulating_supply": 141656479.6, "total_supply": 141656479.6, "is_active": 1,
     "infinite_supply": false, "platform": null, "cmc_rank": 27, "is_fiat": 0,
     "self_reported_circulating_supply": null, "self_reported_market_cap": null, "tvl_ratio": null,
     "last_updated": "2023-07-13T19:18:00.000Z",
     "quote": {"USD": {"price": 18.9923, "volume_24h": 164470339.2, "volume_change_24h": 41.93,
                       "percent_change_1h": 0.12, "percent_change_24h": 5.0, "percent_change_7d": -3.1,
                       "market_cap": 2690354006.4, "market_cap_dominance": 0.2, "fully_diluted_market_cap": 4001677610.1,
                       "tvl": null, "last_updated": "2023-07-13T19:18:00.000Z"}}}
  ]}
}"""


def cmc_error(code: int, message: str) -> str:
    """CoinMarketCap's error body: the `status` object alone."""
    return json.dumps({"status": {"timestamp": "2024-05-24T10:00:00.000Z", "error_code": code,
                                  "error_message": message, "elapsed": 0, "credit_count": 0}})


class TestCoinMarketCap:
    def test_quote(self) -> None:
        ticker = cmc.map_ticker(body(CMC_QUOTES_BTC), "BTC/USD")
        assert ticker.symbol == "BTC/USD" and ticker.venue == "coinmarketcap"
        assert ticker.last == Decimal("29705.93501696529")
        assert ticker.quote_volume_24h == Decimal("39782528268.71518")
        assert ticker.ts == 1654118760000  # 2022-06-01T21:26:00Z
        # open_24h is the price 24 h ago: price / (1 + change/100), to the price's precision
        assert ticker.open_24h == Decimal("31764.61973512152")
        assert abs(ticker.change_pct_24h - Decimal("-6.48106206")) < Decimal("1e-8")
        assert_decimals(ticker.last, ticker.open_24h, ticker.quote_volume_24h)
        assert ticker.bid is ticker.ask is ticker.high_24h is None

    def test_metadata(self) -> None:
        info = cmc.map_metadata(body(CMC_QUOTES_BTC), "BTC/USD")
        assert (info.name, info.provider_symbol, info.currency, info.asset_class) == (
            "Bitcoin", "1", "USD", AssetClass.CRYPTO)
        assert cmc.credit_count(body(CMC_QUOTES_BTC)) == 1

    def test_several_coins_share_a_symbol_the_best_ranked_active_one_wins(self) -> None:
        ticker = cmc.map_ticker(body(CMC_QUOTES_ETC), "ETC/USD")
        assert ticker.last == Decimal("18.9923")
        assert cmc.map_metadata(body(CMC_QUOTES_ETC), "ETC/USD").name == "Ethereum Classic"

    def test_v1_shape_one_object_per_symbol(self) -> None:
        v1 = loads(CMC_QUOTES_BTC)
        v1["data"]["BTC"] = v1["data"]["BTC"][0]
        assert cmc.map_ticker(v1, "BTC/USD").last == Decimal("29705.93501696529")

    def test_a_quote_currency_that_was_not_asked_for(self) -> None:
        with pytest.raises(BadResponse):
            cmc.map_ticker(body(CMC_QUOTES_BTC), "BTC/EUR")

    @pytest.mark.parametrize(
        ("code", "message", "error", "kind"),
        [
            (1001, "This API Key is invalid.", AuthError, FailureKind.AUTH),
            (1002, "API key missing.", AuthError, FailureKind.AUTH),
            (1006, "Your API Key subscription plan doesn't support this endpoint.", NotAvailable, FailureKind.BUSINESS),
            (1008, "You've exceeded your API Key's HTTP request rate limit. Rate limits reset every minute.",
             RateLimited, FailureKind.RATE_LIMITED),
            (1009, "You've exceeded your API Key's daily rate limit.", RateLimited, FailureKind.RATE_LIMITED),
            (1010, "You've exceeded your API Key's monthly rate limit.", RateLimited, FailureKind.RATE_LIMITED),
            (400, 'Invalid value for "symbol": "XYZQ"', SymbolNotFound, FailureKind.BUSINESS),
            (500, "An internal server error occurred.", Unavailable, FailureKind.UNHEALTHY),
        ],
    )
    def test_error_bodies(self, code: int, message: str, error: type, kind: FailureKind) -> None:
        with pytest.raises(error) as err:
            cmc.map_ticker(body(cmc_error(code, message)), "XYZQ/USD" if code == 400 else "BTC/USD")
        assert classify(err.value) is kind
        assert_sentence(err.value)

    def test_unknown_symbol_sentence(self) -> None:
        with pytest.raises(SymbolNotFound, match="does not list XYZQ/USD"):
            cmc.decode(HttpReply(400, cmc_error(400, 'Invalid value for "symbol": "XYZQ"')), "XYZQ/USD")

    @pytest.mark.parametrize("data", ['{"BTC": []}', "{}"])
    def test_empty_results(self, data: str) -> None:
        empty = f'{{"status": {{"timestamp": "2024-05-24T10:00:00.000Z", "error_code": 0, "error_message": null, ' \
                f'"elapsed": 3, "credit_count": 0, "notice": null}}, "data": {data}}}'
        with pytest.raises(SymbolNotFound, match="does not list BTC"):
            cmc.map_ticker(body(empty), "BTC/USD")

    def test_untracked_coin_has_no_price(self) -> None:
        dead = loads(CMC_QUOTES_BTC)
        dead["data"]["BTC"][0]["quote"]["USD"]["price"] = None
        with pytest.raises(SymbolNotFound, match="not actively traded"):
            cmc.map_ticker(dead, "BTC/USD")

    def test_http_errors_without_a_status_object(self) -> None:
        with pytest.raises(Unavailable):
            cmc.decode(HttpReply(502, "<html><body>502 Bad Gateway</body></html>"), "BTC/USD")
        with pytest.raises(BadResponse):
            cmc.decode(HttpReply(200, '{"status": {"error_code": 0'), "BTC/USD")


def test_coinmarketcap_rate_limits_carry_their_waits() -> None:
    with pytest.raises(RateLimited) as minute:
        cmc.decode(HttpReply(429, cmc_error(1008, "You've exceeded your API Key's HTTP request rate limit.")), "BTC/USD")
    assert minute.value.retry_after == 60 and minute.value.resets == "minute"
    with pytest.raises(RateLimited) as day:
        cmc.decode(HttpReply(429, cmc_error(1009, "You've exceeded your API Key's daily rate limit.")), "BTC/USD")
    # The mapper has no clock: the client turns "day" into the seconds until 00:00 UTC.
    assert day.value.retry_after is None and day.value.resets == "day"
    assert "00:00 UTC" in str(day.value)


# =========================================================================== Yahoo Finance

YAHOO_AAPL_1D = """{"chart":{"result":[{"meta":{"currency":"USD","symbol":"AAPL","exchangeName":"NMS",
"fullExchangeName":"NasdaqGS","instrumentType":"EQUITY","firstTradeDate":345479400,"regularMarketTime":1717185601,
"hasPrePostMarketData":true,"gmtoffset":-14400,"timezone":"EDT","exchangeTimezoneName":"America/New_York",
"regularMarketPrice":192.25,"fiftyTwoWeekHigh":199.62,"fiftyTwoWeekLow":164.08,"regularMarketDayHigh":192.57,
"regularMarketDayLow":189.91,"regularMarketVolume":75158277,"longName":"Apple Inc.","shortName":"Apple Inc.",
"chartPreviousClose":191.29,"previousClose":191.29,"scale":3,"priceHint":2,
"currentTradingPeriod":{"pre":{"timezone":"EDT","end":1717162200,"start":1717142400,"gmtoffset":-14400},
"regular":{"timezone":"EDT","end":1717185600,"start":1717162200,"gmtoffset":-14400},
"post":{"timezone":"EDT","end":1717200000,"start":1717185600,"gmtoffset":-14400}},
"dataGranularity":"1d","range":"1d","validRanges":["1d","5d","1mo","3mo","6mo","1y","2y","5y","10y","ytd","max"]},
"timestamp":[1717162200],"indicators":{"quote":[{"open":[191.44000244140625],"close":[192.25],
"low":[189.91000366210938],"high":[192.57000732421875],"volume":[75158277]}],
"adjclose":[{"adjclose":[192.25]}]}}],"error":null}}"""

# Five daily bars with a null row (no trade) and Yahoo's float32 noise.
YAHOO_AAPL_5D = """{"chart":{"result":[{"meta":{"currency":"USD","symbol":"AAPL","exchangeName":"NMS",
"fullExchangeName":"NasdaqGS","instrumentType":"EQUITY","regularMarketTime":1717185601,"gmtoffset":-14400,
"timezone":"EDT","exchangeTimezoneName":"America/New_York","regularMarketPrice":192.25,"priceHint":2,
"dataGranularity":"1d","range":"5d"},
"timestamp":[1716816600,1716903000,1716989400,1717075800,1717162200],
"indicators":{"quote":[{"open":[191.50999450683594,189.61000061035156,null,190.75999450683594,191.44000244140625],
"high":[193.0,192.25,null,192.17999267578125,192.57000732421875],
"low":[189.10000610351562,189.50999450683594,null,190.6300048828125,189.91000366210938],
"close":[189.99000549316406,190.2899932861328,null,191.2899932861328,192.25],
"volume":[52280100,53068000,null,49889100,75158277]}],"adjclose":[{"adjclose":[189.99,190.29,null,191.29,192.25]}]}}],
"error":null}}"""

YAHOO_BTC_5M = """{"chart":{"result":[{"meta":{"currency":"USD","symbol":"BTC-USD","exchangeName":"CCC",
"fullExchangeName":"CCC","instrumentType":"CRYPTOCURRENCY","regularMarketTime":1717200120,"gmtoffset":0,
"timezone":"UTC","exchangeTimezoneName":"UTC","regularMarketPrice":67432.15234375,"priceHint":2,
"dataGranularity":"5m","range":""},
"timestamp":[1717199400,1717199700,1717200000],
"indicators":{"quote":[{"open":[67410.203125,67420.5,67431.8984375],"high":[67425.0,67440.1015625,67450.0],
"low":[67400.0,67415.203125,67430.0],"close":[67420.5,67431.8984375,67432.15234375],"volume":[0,1261568,null]}]}}],
"error":null}}"""

YAHOO_NOT_FOUND = '{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}'
YAHOO_RANGE = ('{"chart":{"result":null,"error":{"code":"Unprocessable Entity","description":"1m data not available '
               'for startTime=1700000000 and endTime=1717200000. Only 8 days worth of 1m granularity data are '
               'allowed to be fetched per request."}}}')
YAHOO_NO_BARS = ('{"chart":{"result":[{"meta":{"currency":"USD","symbol":"AAPL","exchangeName":"NMS",'
                 '"instrumentType":"EQUITY","regularMarketTime":1717185601,"gmtoffset":-14400,'
                 '"regularMarketPrice":192.25,"priceHint":2,"dataGranularity":"1m","range":"1d"},'
                 '"indicators":{"quote":[{}]}}],"error":null}}')


class TestYahoo:
    def test_quote(self) -> None:
        ticker = yh.map_ticker(body(YAHOO_AAPL_1D), "AAPL")
        assert ticker == Ticker(
            symbol="AAPL", ts=1717185601000, last=Decimal("192.25"), open_24h=Decimal("191.44"),
            high_24h=Decimal("192.57"), low_24h=Decimal("189.91"), base_volume_24h=Decimal(75158277), venue="yahoo")
        assert_decimals(ticker.last, ticker.open_24h, ticker.high_24h, ticker.low_24h)

    def test_metadata(self) -> None:
        info = yh.map_metadata(body(YAHOO_AAPL_1D), "AAPL")
        assert (info.name, info.currency, info.exchange, info.provider_symbol) == (
            "Apple Inc.", "USD", "NasdaqGS", "AAPL")

    def test_daily_candles_skip_gaps_round_the_float_noise_and_sit_at_utc_midnight(self) -> None:
        candles = yh.map_candles(body(YAHOO_AAPL_5D), "AAPL", "1d")
        assert [c.ts for c in candles] == [1716768000000, 1716854400000, 1717027200000, 1717113600000]
        assert candles[1] == Candle(1716854400000, Decimal("189.61"), Decimal("192.25"), Decimal("189.51"),
                                    Decimal("190.29"), Decimal(53068000))
        for c in candles:
            assert_decimals(c.open, c.high, c.low, c.close, c.volume)
            assert c.ts % 86_400_000 == 0

    def test_intraday_candles_keep_their_time_and_a_null_volume_is_zero(self) -> None:
        candles = yh.map_candles(body(YAHOO_BTC_5M), "BTC/USD", "5m")
        assert [c.ts for c in candles] == [1717199400000, 1717199700000, 1717200000000]
        assert candles[-1].volume == 0 and candles[1].volume == Decimal(1261568)
        assert candles[2].close == Decimal("67432.15")

    def test_no_bars_is_an_empty_list(self) -> None:
        assert yh.map_candles(body(YAHOO_NO_BARS), "AAPL", "1m") == []

    def test_unknown_symbol(self) -> None:
        with pytest.raises(SymbolNotFound) as err:
            yh.map_ticker(body(YAHOO_NOT_FOUND), "AAPLX")
        assert "AAPLX" in str(err.value) and "delisted" in str(err.value)
        with pytest.raises(SymbolNotFound):
            yh.decode(HttpReply(404, YAHOO_NOT_FOUND), "AAPLX")
        assert_sentence(err.value)

    def test_empty_result_without_error_is_an_unknown_symbol(self) -> None:
        with pytest.raises(SymbolNotFound):
            yh.map_ticker(body('{"chart":{"result":[],"error":null}}'), "AAPL")

    def test_range_error(self) -> None:
        with pytest.raises(ProviderError, match="Only 8 days worth") as err:
            yh.decode(HttpReply(422, YAHOO_RANGE), "AAPL")
        assert classify(err.value) is FailureKind.BUSINESS

    def test_throttled_with_plain_text(self) -> None:
        with pytest.raises(RateLimited) as err:
            yh.decode(HttpReply(429, "Too Many Requests\r\n"), "AAPL")
        assert err.value.retry_after == 60
        with pytest.raises(RateLimited) as err:
            yh.decode(HttpReply(429, "Too Many Requests\r\n", retry_after=7), "AAPL")
        assert err.value.retry_after == 7
        assert_sentence(err.value)

    def test_blocked_is_a_long_pause_not_a_key_problem(self) -> None:
        with pytest.raises(RateLimited) as err:
            yh.decode(HttpReply(403, "<html>Forbidden</html>"), "AAPL")
        assert err.value.retry_after == yh.BLOCKED_WAIT

    def test_server_errors_and_garbage(self) -> None:
        with pytest.raises(Unavailable):
            yh.decode(HttpReply(503, "<html>Will be right back</html>"), "AAPL")
        with pytest.raises(BadResponse):
            yh.decode(HttpReply(200, '{"chart":{"result":[{"meta":'), "AAPL")
        with pytest.raises(BadResponse, match="do not line up"):
            yh.map_candles(loads(YAHOO_BTC_5M.replace('"open":[67410.203125,', '"open":[')), "BTC/USD", "5m")


# =========================================================================== Alpha Vantage

AV_GLOBAL_QUOTE = """{
    "Global Quote": {
        "01. symbol": "AAPL",
        "02. open": "225.5400",
        "03. high": "226.1900",
        "04. low": "223.8900",
        "05. price": "225.9700",
        "06. volume": "9226278",
        "07. latest trading day": "2019-10-04",
        "08. previous close": "220.8200",
        "09. change": "5.1500",
        "10. change percent": "2.3322%"
    }
}"""

AV_INTRADAY = """{
    "Meta Data": {
        "1. Information": "Intraday (5min) open, high, low, close prices and volume",
        "2. Symbol": "IBM",
        "3. Last Refreshed": "2024-05-24 19:55:00",
        "4. Interval": "5min",
        "5. Output Size": "Compact",
        "6. Time Zone": "US/Eastern"
    },
    "Time Series (5min)": {
        "2024-05-24 19:55:00": {"1. open": "170.0200", "2. high": "170.0200", "3. low": "170.0000",
                                "4. close": "170.0000", "5. volume": "51"},
        "2024-05-24 19:50:00": {"1. open": "170.0100", "2. high": "170.0500", "3. low": "170.0100",
                                "4. close": "170.0200", "5. volume": "318"},
        "2024-01-03 09:30:00": {"1. open": "161.0000", "2. high": "161.7300", "3. low": "160.8800",
                                "4. close": "161.5200", "5. volume": "309563"}
    }
}"""

AV_DAILY = """{
    "Meta Data": {
        "1. Information": "Daily Prices (open, high, low, close) and Volumes",
        "2. Symbol": "IBM",
        "3. Last Refreshed": "2024-05-24",
        "4. Output Size": "Compact",
        "5. Time Zone": "US/Eastern"
    },
    "Time Series (Daily)": {
        "2024-05-24": {"1. open": "169.9900", "2. high": "170.4700", "3. low": "168.8100",
                       "4. close": "170.0000", "5. volume": "2587619"},
        "2024-05-23": {"1. open": "172.1000", "2. high": "172.2500", "3. low": "168.8900",
                       "4. close": "169.6800", "5. volume": "3506547"}
    }
}"""

AV_FX_DAILY = """{
    "Meta Data": {
        "1. Information": "Forex Daily Prices (open, high, low, close)",
        "2. From Symbol": "EUR",
        "3. To Symbol": "USD",
        "4. Output Size": "Compact",
        "5. Last Refreshed": "2024-05-24 21:55:00",
        "6. Time Zone": "UTC"
    },
    "Time Series FX (Daily)": {
        "2024-05-24": {"1. open": "1.08090", "2. high": "1.08580", "3. low": "1.08030", "4. close": "1.08490"}
    }
}"""

AV_EXCHANGE_RATE = """{
    "Realtime Currency Exchange Rate": {
        "1. From_Currency Code": "BTC",
        "2. From_Currency Name": "Bitcoin",
        "3. To_Currency Code": "USD",
        "4. To_Currency Name": "United States Dollar",
        "5. Exchange Rate": "67123.45000000",
        "6. Last Refreshed": "2024-05-24 20:01:02",
        "7. Time Zone": "UTC",
        "8. Bid Price": "67123.40000000",
        "9. Ask Price": "67123.50000000"
    }
}"""

AV_INVALID_KEY = ('{"Error Message": "the parameter apikey is invalid or missing. Please claim your free API key '
                  'on (https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."}')
AV_INVALID_CALL = ('{"Error Message": "Invalid API call. Please retry or visit the documentation '
                   '(https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY."}')
AV_MINUTE_NOTE = ('{"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute '
                  'and 500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to '
                  'target a higher API call frequency."}')
AV_DAILY_NOTE = ('{"Information": "We have detected your API key as SECRETKEY123XYZ and our standard API rate limit '
                 'is 25 requests per day. Please subscribe to any of the premium plans at '
                 'https://www.alphavantage.co/premium/ to instantly remove all daily rate limits."}')
AV_PREMIUM = ('{"Information": "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to '
              'any of the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium '
              'endpoints"}')
AV_DEMO = ('{"Information": "The **demo** API key is for demo purposes only. Please claim your free API key at '
           '(https://www.alphavantage.co/support/#api-key) to explore our full API offerings. It takes fewer than '
           '20 seconds."}')


class TestAlphaVantage:
    def test_global_quote(self) -> None:
        ticker = av.map_global_quote(body(AV_GLOBAL_QUOTE), "AAPL")
        assert ticker == Ticker(
            symbol="AAPL", ts=1570147200000, last=Decimal("225.9700"), open_24h=Decimal("225.5400"),
            high_24h=Decimal("226.1900"), low_24h=Decimal("223.8900"), base_volume_24h=Decimal(9226278),
            venue="alphavantage")
        assert str(ticker.last) == "225.9700"  # the provider's own string, digit for digit

    def test_exchange_rate(self) -> None:
        ticker = av.map_exchange_rate(body(AV_EXCHANGE_RATE), "BTC/USD")
        assert (ticker.last, ticker.bid, ticker.ask) == (
            Decimal("67123.45000000"), Decimal("67123.40000000"), Decimal("67123.50000000"))
        assert ticker.ts == 1716580862000  # 2024-05-24 20:01:02 UTC

    def test_intraday_is_converted_from_us_eastern(self) -> None:
        candles = av.map_time_series(body(AV_INTRADAY), "IBM", "5m")
        # 19:50/19:55 EDT = 23:50/23:55 UTC; 2024-01-03 09:30 EST = 14:30 UTC
        assert [c.ts for c in candles] == [1704292200000, 1716594600000, 1716594900000]
        assert candles[-1] == Candle(1716594900000, Decimal("170.0200"), Decimal("170.0200"), Decimal("170.0000"),
                                     Decimal("170.0000"), Decimal(51))

    def test_us_eastern_without_a_time_zone_database(self) -> None:
        from datetime import datetime

        assert av._us_eastern_offset(datetime(2024, 5, 24, 19, 55)).total_seconds() == -4 * 3600
        assert av._us_eastern_offset(datetime(2024, 1, 3, 9, 30)).total_seconds() == -5 * 3600
        assert av._us_eastern_offset(datetime(2024, 3, 10, 1, 59)).total_seconds() == -5 * 3600
        assert av._us_eastern_offset(datetime(2024, 3, 10, 3, 0)).total_seconds() == -4 * 3600
        assert av._us_eastern_offset(datetime(2024, 11, 3, 2, 0)).total_seconds() == -5 * 3600

    def test_daily_and_fx_daily(self) -> None:
        daily = av.map_time_series(body(AV_DAILY), "IBM", "1d")
        assert [c.ts for c in daily] == [1716422400000, 1716508800000] and daily[1].close == Decimal("170.0000")
        fx = av.map_time_series(body(AV_FX_DAILY), "EUR/USD", "1d")
        assert fx == [Candle(1716508800000, Decimal("1.08090"), Decimal("1.08580"), Decimal("1.08030"),
                             Decimal("1.08490"), Decimal(0))]

    def test_empty_series_is_an_empty_list(self) -> None:
        empty = loads(AV_DAILY)
        empty["Time Series (Daily)"] = {}
        assert av.map_time_series(empty, "IBM", "1d") == []

    def test_unknown_symbol(self) -> None:
        with pytest.raises(SymbolNotFound, match="no quote for XYZQ"):
            av.map_global_quote(body('{"Global Quote": {}}'), "XYZQ")
        with pytest.raises(SymbolNotFound, match="does not know XYZQ"):
            av.map_time_series(body(AV_INVALID_CALL), "XYZQ", "1d")

    def test_invalid_key(self) -> None:
        with pytest.raises(AuthError) as err:
            av.map_global_quote(body(AV_INVALID_KEY), "IBM")
        assert classify(err.value) is FailureKind.AUTH
        assert_sentence(err.value)
        with pytest.raises(AuthError, match="demo key"):
            av.map_global_quote(body(AV_DEMO), "IBM")

    def test_minute_note(self) -> None:
        with pytest.raises(RateLimited) as err:
            av.map_time_series(body(AV_MINUTE_NOTE), "IBM", "5m")
        assert err.value.retry_after == 60 and err.value.resets == "minute"
        assert classify(err.value) is FailureKind.RATE_LIMITED

    def test_daily_note_echoes_the_key_and_the_sentence_does_not(self) -> None:
        with pytest.raises(RateLimited) as err:
            av.map_global_quote(body(AV_DAILY_NOTE), "IBM")
        assert err.value.resets == "day" and err.value.retry_after is None
        assert "SECRETKEY123XYZ" not in str(err.value)
        assert "00:00 UTC" in str(err.value)
        assert_sentence(err.value)

    def test_an_unrecognised_note_is_shown_with_the_key_masked(self) -> None:
        odd = '{"Information": "We have detected your API key as SECRETKEY123XYZ and something new happened."}'
        with pytest.raises(ProviderError) as err:
            av.map_global_quote(body(odd), "IBM")
        assert "SECRETKEY123XYZ" not in str(err.value) and "something new happened" in str(err.value)

    def test_premium(self) -> None:
        with pytest.raises(NotAvailable, match="premium"):
            av.map_time_series(body(AV_PREMIUM), "IBM", "1d")

    def test_garbage(self) -> None:
        with pytest.raises(BadResponse):
            av.decode(HttpReply(200, '{"Global Quote": {"01. symbol": "IB'), "IBM")
        with pytest.raises(BadResponse):
            av.map_time_series(body('{"Meta Data": {}}'), "IBM", "1d")
        with pytest.raises(Unavailable):
            av.decode(HttpReply(503, "Service Unavailable"), "IBM")


# =========================================================================== Polygon

POLYGON_AGGS_DAY = """{"ticker":"AAPL","queryCount":2,"resultsCount":2,"adjusted":true,"results":[
{"v":70790813,"vw":131.6292,"o":130.465,"c":130.15,"h":133.41,"l":129.89,"t":1673240400000,"n":645365},
{"v":63896155,"vw":129.8543,"o":130.26,"c":130.73,"h":131.2636,"l":128.12,"t":1673326800000,"n":574016}],
"status":"OK","request_id":"6a7e466379af0a71039d60cc78e72282","count":2}"""

POLYGON_AGGS_CRYPTO_DESC = """{"ticker":"X:BTCUSD","queryCount":2,"resultsCount":2,"adjusted":true,"results":[
{"v":12.3456789,"vw":16835.2,"o":16830.1,"c":16835.42,"h":16840,"l":16829.5,"t":1605560940000,"n":210},
{"v":8.0001,"vw":16828.9,"o":16825.5,"c":16830.1,"h":16833.01,"l":16822,"t":1605560880000,"n":150}],
"status":"DELAYED","request_id":"b2f1e0c1d9a8","count":2}"""

POLYGON_LAST_TRADE = """{"request_id":"f05562305bd26ced64b98ed68b3c5d96","results":{"T":"AAPL","c":[37],
"f":1617901342969796400,"i":"118749","p":129.8473,"q":3135876,"r":202,"s":25,"t":1617901342969834000,"x":4,
"y":1617901342968000000,"z":3},"status":"OK"}"""

POLYGON_LAST_CRYPTO = """{"last":{"conditions":[1],"exchange":4,"price":16835.42,"size":0.006909,
"timestamp":1605560885027},"request_id":"d2d779df015fe2b7fbb8e58366610ef7","status":"success","symbol":"BTC-USD"}"""

POLYGON_LAST_QUOTE = """{"last":{"ask":0.73124,"bid":0.73122,"exchange":48,"timestamp":1605557756000},
"request_id":"a73a29dbcab4eb8404d9e99ab1ca8f92","status":"success","symbol":"AUD/USD"}"""

POLYGON_EMPTY = ('{"ticker":"XYZQ","queryCount":0,"resultsCount":0,"adjusted":true,"status":"OK",'
                 '"request_id":"1e1a5b3a8c6f4f0e","count":0}')
POLYGON_UNKNOWN_KEY = '{"status":"ERROR","request_id":"a1b2c3","error":"Unknown API Key"}'
POLYGON_NO_KEY = '{"status":"ERROR","request_id":"a1b2c4","error":"API Key was not provided"}'
POLYGON_NOT_ENTITLED = ('{"status":"NOT_AUTHORIZED","request_id":"a1b2c5","message":"You are not entitled to this '
                        'data. Please upgrade your plan at https://polygon.io/pricing"}')
POLYGON_RATE = ('{"status":"ERROR","request_id":"a1b2c6","error":"You\'ve exceeded the maximum requests per minute, '
                'please wait or upgrade your subscription to continue. https://polygon.io/pricing"}')
POLYGON_NOT_FOUND = '{"status":"NOT_FOUND","request_id":"a1b2c7","message":"Data not found."}'


class TestPolygon:
    def test_daily_aggregates_move_to_utc_midnight(self) -> None:
        candles = pg.map_aggregates(body(POLYGON_AGGS_DAY), "AAPL", "1d")
        # 1673240400000 is 2023-01-09 00:00 US Eastern (05:00 UTC)
        assert candles[0] == Candle(1673222400000, Decimal("130.465"), Decimal("133.41"), Decimal("129.89"),
                                    Decimal("130.15"), Decimal(70790813))
        assert candles[1].ts == 1673308800000
        for c in candles:
            assert_decimals(c.open, c.high, c.low, c.close, c.volume)

    def test_intraday_aggregates_keep_their_time_and_come_back_chronological(self) -> None:
        candles = pg.map_aggregates(body(POLYGON_AGGS_CRYPTO_DESC), "BTC/USD", "1m")
        assert [c.ts for c in candles] == [1605560880000, 1605560940000]
        assert candles[1].volume == Decimal("12.3456789") and candles[1].high == Decimal(16840)

    def test_no_results_is_an_empty_list(self) -> None:
        assert pg.map_aggregates(body(POLYGON_EMPTY), "XYZQ", "1d") == []

    def test_last_trade(self) -> None:
        ticker = pg.map_last_trade(body(POLYGON_LAST_TRADE), "AAPL")
        assert ticker == Ticker(symbol="AAPL", ts=1617901342969, last=Decimal("129.8473"), venue="polygon")

    def test_last_crypto_trade(self) -> None:
        ticker = pg.map_last_crypto_trade(body(POLYGON_LAST_CRYPTO), "BTC/USD")
        assert (ticker.last, ticker.ts) == (Decimal("16835.42"), 1605560885027)

    def test_last_forex_quote_is_the_midpoint(self) -> None:
        ticker = pg.map_last_quote(body(POLYGON_LAST_QUOTE), "AUD/USD")
        assert (ticker.bid, ticker.ask, ticker.last) == (Decimal("0.73122"), Decimal("0.73124"), Decimal("0.73123"))
        assert ticker.spread == Decimal("0.00002")

    @pytest.mark.parametrize(
        ("status", "text", "error", "kind"),
        [
            (401, POLYGON_UNKNOWN_KEY, AuthError, FailureKind.AUTH),
            (401, POLYGON_NO_KEY, AuthError, FailureKind.AUTH),
            (403, POLYGON_NOT_ENTITLED, NotAvailable, FailureKind.BUSINESS),
            (429, POLYGON_RATE, RateLimited, FailureKind.RATE_LIMITED),
            (404, POLYGON_NOT_FOUND, SymbolNotFound, FailureKind.BUSINESS),
        ],
    )
    def test_error_bodies(self, status: int, text: str, error: type, kind: FailureKind) -> None:
        with pytest.raises(error) as err:
            pg.decode(HttpReply(status, text), "AAPL")
        assert classify(err.value) is kind
        assert_sentence(err.value)
        # the mappers read the same bodies the same way
        with pytest.raises(error):
            pg.map_last_trade(body(text), "AAPL")

    def test_rate_limit_honours_retry_after(self) -> None:
        with pytest.raises(RateLimited) as err:
            pg.decode(HttpReply(429, POLYGON_RATE, retry_after=12), "AAPL")
        assert err.value.retry_after == 12
        with pytest.raises(RateLimited) as err:
            pg.decode(HttpReply(429, POLYGON_RATE), "AAPL")
        assert err.value.retry_after == 60

    def test_plan_sentence(self) -> None:
        with pytest.raises(NotAvailable) as err:
            pg.map_aggregates(body(POLYGON_NOT_ENTITLED), "^GSPC", "1d")
        assert "plan does not include" in str(err.value) and "^GSPC" in str(err.value)

    def test_garbage(self) -> None:
        with pytest.raises(BadResponse):
            pg.decode(HttpReply(200, POLYGON_AGGS_DAY[:100]), "AAPL")
        with pytest.raises(Unavailable):
            pg.decode(HttpReply(500, '{"status":"ERROR","request_id":"x","error":"Internal server error"}'), "AAPL")
        with pytest.raises(BadResponse):
            pg.map_aggregates(body('{"status":"OK","results":[{"o":1,"h":2,"l":0.5,"c":1.5,"v":3}]}'), "AAPL", "1d")
