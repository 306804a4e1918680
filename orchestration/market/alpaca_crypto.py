"""Alpaca crypto bars (``BTC/USD``, ``ETH/USD``, ...) through alpaca-py's ``CryptoHistoricalDataClient``.

Crypto trades 24/7: every bar Alpaca returns is inside a session of the ``24/7`` calendar, so nothing is
filtered to regular hours. Volume is in coins and fractional. Alpaca's crypto data needs no keys; keys, when
given (``ALPACA_API_KEY``/``ALPACA_SECRET_KEY``), raise the rate limit. ``url_override`` points the client at a
proxy or a test server (``GET {url}/v1beta3/crypto/us/bars``).

Example:
    >>> AlpacaCryptoConfig(symbols=("BTC/USD", "ETH/USD")).symbols
    ('BTC/USD', 'ETH/USD')
    >>> AlpacaCryptoConfig(symbols=("BTCUSD",))
    Traceback (most recent call last):
    ...
    orchestration.errors.ConfigError: alpaca crypto: symbols ['BTCUSD'] are not pairs like BTC/USD
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import polars as pl
from alpaca.common.exceptions import APIError
from alpaca.data.historical import CryptoHistoricalDataClient
from alpaca.data.requests import CryptoBarsRequest
from alpaca.data.timeframe import TimeFrame
from requests.exceptions import RequestException

from orchestration.errors import ConfigError, SourceError
from orchestration.market.alpaca import ALPACA_TIMEFRAMES
from orchestration.market.bars import SOURCE_SCHEMA, SourceBatch, conform, empty_source_frame, timeframe_delta
from orchestration.market.corporate_actions import empty_actions

#: A crypto pair: base and quote currency, upper case (DESIGN.md §3.1 allows the "/").
PAIR = re.compile(r"^[A-Z0-9]{2,7}/[A-Z0-9]{2,7}$")


@dataclass(frozen=True)
class AlpacaCryptoConfig:
    """What to ask Alpaca's crypto data API for.

    Attributes:
        symbols: pairs like ``BTC/USD``.
        timeframe: one of ``1m``, ``5m``, ``15m``, ``1h``, ``1d``.
        url_override: base URL without ``/v1beta3`` (a proxy or a test server).
    """

    symbols: tuple[str, ...]
    timeframe: str = "15m"
    url_override: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.symbols, str) or not self.symbols:
            raise ConfigError("alpaca crypto: symbols must be a non-empty list of pairs like BTC/USD")
        object.__setattr__(self, "symbols", tuple(self.symbols))
        bad = [s for s in self.symbols if not isinstance(s, str) or not PAIR.match(s)]
        if bad:
            raise ConfigError(f"alpaca crypto: symbols {bad[:5]!r} are not pairs like BTC/USD")
        if self.timeframe not in ALPACA_TIMEFRAMES:
            raise ConfigError(f"alpaca crypto: timeframe {self.timeframe!r} is not supported (choose one of {', '.join(ALPACA_TIMEFRAMES)})")
        if self.url_override is not None and urlsplit(self.url_override).scheme not in ("http", "https"):
            raise ConfigError(f"alpaca crypto: url_override {self.url_override!r} must start with http:// or https://")


class AlpacaCryptoSource:
    """Crypto bars of :class:`AlpacaCryptoConfig` pairs, as a :class:`~orchestration.market.bars.BarSource`."""

    name = "alpaca"

    def __init__(self, config: AlpacaCryptoConfig, *, api_key: str | None = None, secret_key: str | None = None):
        self.config = config
        self._api_key = api_key or os.environ.get("ALPACA_API_KEY") or None
        self._secret_key = secret_key or os.environ.get("ALPACA_SECRET_KEY") or None

    def __repr__(self) -> str:  # the config, never the keys
        return f"AlpacaCryptoSource({self.config!r})"

    def fetch(self, start: dt.datetime, end: dt.datetime, *, now: dt.datetime | None = None) -> SourceBatch:
        """Bars with open time in ``[start, end)`` (UTC-aware) that have closed by ``now``.

        Raises:
            SourceError: Alpaca refused the request or was unreachable (one line naming the request).
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("AlpacaCryptoSource.fetch: start and end must be timezone-aware")
        now = now or dt.datetime.now(dt.UTC)
        end = min(end, now)
        if end <= start:
            return self._batch(empty_source_frame())
        amount, unit = ALPACA_TIMEFRAMES[self.config.timeframe]
        request = CryptoBarsRequest(symbol_or_symbols=list(self.config.symbols), timeframe=TimeFrame(amount, unit),
                                    start=start, end=end)
        client = CryptoHistoricalDataClient(api_key=self._api_key, secret_key=self._secret_key, url_override=self.config.url_override)
        what = f"GET /v1beta3/crypto/us/bars (symbols {','.join(self.config.symbols)} {start:%Y-%m-%dT%H:%MZ}..{end:%Y-%m-%dT%H:%MZ})"
        try:
            barset = client.get_crypto_bars(request)
        except APIError as err:
            raise SourceError(f"alpaca: {what}: HTTP {err.status_code}: {str(err)[:200]}") from None
        except RequestException as err:
            raise SourceError(f"alpaca: {what}: unreachable ({type(err).__name__})") from None
        rows = [
            {"symbol": symbol, "timeframe": self.config.timeframe, "ts": bar.timestamp.astimezone(dt.UTC), "open": bar.open,
             "high": bar.high, "low": bar.low, "close": bar.close, "volume": bar.volume, "vwap": bar.vwap,
             "trade_count": None if bar.trade_count is None else int(bar.trade_count), "source": "alpaca"}
            for symbol, bars in barset.data.items() for bar in bars
        ]
        frame = pl.DataFrame(rows, schema={k: v for k, v in SOURCE_SCHEMA.items() if k != "source_row"}) if rows else empty_source_frame()
        tf = timeframe_delta(self.config.timeframe)
        closed = frame.filter((pl.col("ts") >= start) & (pl.col("ts") < end) & (pl.col("ts") + tf <= now))
        return self._batch(closed.sort("symbol", "ts"))

    def corporate_actions(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Crypto pairs have no splits or dividends: always none."""
        return empty_actions()

    def _batch(self, bars: pl.DataFrame) -> SourceBatch:
        bars = bars.drop("source_row", strict=False).with_row_index("source_row").with_columns(pl.col("source_row").cast(pl.Int64))
        symbols = pl.DataFrame({"symbol": list(self.config.symbols), "sector": ["CRYPTO"] * len(self.config.symbols)})
        return SourceBatch(bars=conform(bars), label=self.name, symbols=symbols)
