"""Stock bars from Alpaca's market-data API, as a :class:`~orchestration.market.bars.BarSource`.

:class:`AlpacaSource` asks ``GET /v2/stocks/bars`` through alpaca-py's
``StockHistoricalDataClient`` (which follows ``next_page_token`` paging itself),
one request per chunk of ``symbols_per_request`` symbols, and returns the bars
in the contract of DESIGN.md §3.1. What it does beyond a plain call:

* **Window**: only bars whose open time is in ``[start, end)`` and that have
  closed by ``now`` (``ts + timeframe <= now``) are kept, like every source.
* **Daily bars** are stamped by Alpaca at midnight America/New_York; the
  contract stamps them at the session **open**, so each ``1d`` bar is moved to
  the XNYS open of its date (``2024-01-02`` -> 14:30 UTC, ``2024-07-01`` ->
  13:30 UTC; early-close days still open at 09:30 New York). A daily bar that is
  not at New York midnight of a session day keeps its time, so validation
  rejects it instead of it being silently shifted.
* **Extended hours**: Alpaca's intraday bars include pre-market and after-hours
  trading (04:00-20:00 New York). Bars that do not overlap an XNYS regular
  session are left out, and their count is reported in
  ``batch.notes["extended_hours_bars_dropped"]``; the contract only knows
  regular sessions, and validation would otherwise reject most of a day.
* **Errors** become one-line :class:`~orchestration.errors.SourceError`\\ s:
  HTTP 429/504 are retried per HTTP request (so a rate limit on page 7 does not
  refetch pages 1-6) with exponential backoff or the server's ``Retry-After``;
  other HTTP errors and network failures are not retried. Secrets never appear
  in messages or logs.

Example:
    >>> AlpacaConfig(symbols=("AAPL", "MSFT"), timeframe="1d").feed
    'iex'

Fetching needs keys in ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``::

    import datetime as dt
    source = AlpacaSource(AlpacaConfig(symbols=("AAPL", "MSFT")))
    batch = source.fetch(dt.datetime(2024, 1, 2, tzinfo=dt.UTC), dt.datetime(2024, 1, 3, tzinfo=dt.UTC))
    batch.bars.height  # at most 2 symbols x 26 fifteen-minute bars (IEX misses quiet ones)
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import polars as pl
import requests
from alpaca.common.enums import BaseURL
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from requests.adapters import HTTPAdapter

from orchestration.errors import ConfigError, SourceError
from orchestration.market.bars import UTC_TS, SourceBatch, conform, empty_source_frame, timeframe_delta
from orchestration.market.calendars import sessions

log = logging.getLogger(__name__)

#: Our timeframe codes and the Alpaca timeframe each is asked as.
ALPACA_TIMEFRAMES: dict[str, tuple[int, TimeFrameUnit]] = {
    "1m": (1, TimeFrameUnit.Minute),
    "5m": (5, TimeFrameUnit.Minute),
    "15m": (15, TimeFrameUnit.Minute),
    "1h": (1, TimeFrameUnit.Hour),
    "1d": (1, TimeFrameUnit.Day),
}
_PATH = "GET /v2/stocks/bars"
_SYMBOL = re.compile(r"^[A-Z0-9.\-]{1,15}$")  # §3.1 minus "/": crypto pairs are not stocks
_RETRY_STATUSES = frozenset({429, 504})
_MAX_DELAY_SECONDS = 60.0  # cap on Retry-After and on the backoff
_NEW_YORK = "America/New_York"
#: Alpaca's bar fields (``t`` is RFC 3339 text) and their types.
_RAW_SCHEMA = {
    "t": pl.String(), "o": pl.Float64(), "h": pl.Float64(), "l": pl.Float64(), "c": pl.Float64(),
    "v": pl.Float64(), "n": pl.Int64(), "vw": pl.Float64(),
}  # fmt: skip


@dataclass(frozen=True)
class AlpacaConfig:
    """What to ask Alpaca for, and how hard to try.

    Attributes:
        symbols: stock tickers, upper case (``BRK.B`` style for share classes).
        timeframe: one of ``1m``, ``5m``, ``15m``, ``1h``, ``1d``.
        feed: Alpaca data feed (``iex`` is free; ``sip`` needs a subscription).
        adjustment: corporate-action adjustment: ``raw``, ``split``, ``dividend`` or ``all``.
        url_override: base URL without ``/v2`` (a proxy or a test server).
        max_attempts: tries per HTTP request when Alpaca answers 429 or 504.
        backoff_seconds: first wait between tries; doubles each time.
        symbols_per_request: symbols asked in one request (and its pages).
        timeout_seconds: how long to wait for Alpaca to connect or answer.
    """

    symbols: tuple[str, ...]
    timeframe: str = "15m"
    feed: str = "iex"
    adjustment: str = "raw"
    url_override: str | None = None
    max_attempts: int = 4
    backoff_seconds: float = 1.0
    symbols_per_request: int = 100
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.symbols, str) or not isinstance(self.symbols, Sequence) or not self.symbols:
            raise ConfigError("alpaca: symbols must be a non-empty list of tickers")
        object.__setattr__(self, "symbols", tuple(self.symbols))
        bad = [s for s in self.symbols if not isinstance(s, str) or not _SYMBOL.match(s)]
        if bad:
            raise ConfigError(f"alpaca: symbols {bad[:5]!r} are not upper-case stock tickers")
        if len(set(self.symbols)) != len(self.symbols):
            raise ConfigError("alpaca: symbols lists a ticker more than once")
        _choice("timeframe", self.timeframe, ALPACA_TIMEFRAMES)
        _choice("feed", self.feed, [e.value for e in DataFeed])
        _choice("adjustment", self.adjustment, [e.value for e in Adjustment])
        if self.url_override is not None and urlsplit(self.url_override).scheme not in ("http", "https"):
            raise ConfigError(f"alpaca: url_override {self.url_override!r} must start with http:// or https://")
        _number("max_attempts", self.max_attempts, 1, 10, integer=True)
        _number("symbols_per_request", self.symbols_per_request, 1, 1000, integer=True)
        _number("backoff_seconds", self.backoff_seconds, 0, _MAX_DELAY_SECONDS)
        _number("timeout_seconds", self.timeout_seconds, 0.001, 600)

    @property
    def base_url(self) -> str:
        return (self.url_override or BaseURL.DATA.value).rstrip("/")


def _choice(field: str, value: str, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"alpaca: {field} {value!r} is not supported (choose one of {', '.join(allowed)})")


def _number(field: str, value: object, low: float, high: float, *, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"alpaca: {field}={value!r} must be {kind} from {low:g} to {high:g}")


class AlpacaSource:
    """Bars of :class:`AlpacaConfig` symbols from Alpaca (see the module docstring).

    Args:
        config: what to fetch.
        api_key, secret_key: Alpaca keys; default to ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``.

    Raises:
        ConfigError: if either key is missing.
    """

    name = "alpaca"

    def __init__(self, config: AlpacaConfig, *, api_key: str | None = None, secret_key: str | None = None):
        self.config = config
        self._api_key = api_key or os.environ.get("ALPACA_API_KEY", "")
        self._secret_key = secret_key or os.environ.get("ALPACA_SECRET_KEY", "")
        if not (self._api_key and self._secret_key):
            raise ConfigError(
                "alpaca: ALPACA_API_KEY and ALPACA_SECRET_KEY must be set "
                "(keys of an Alpaca account: Dashboard > API Keys)"
            )

    def __repr__(self) -> str:  # the config, never the keys
        return f"AlpacaSource({self.config!r})"

    def fetch(self, start: dt.datetime, end: dt.datetime, *, now: dt.datetime | None = None) -> SourceBatch:
        """Bars with open time in ``[start, end)`` (UTC-aware) that have closed by ``now``.

        Raises:
            SourceError: Alpaca refused the keys or the request, kept rate limiting, failed, or was unreachable.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("AlpacaSource.fetch: start and end must be timezone-aware")
        now = now or dt.datetime.now(dt.UTC)
        end = min(end, now)
        if end <= start:
            return self._batch(empty_source_frame(), dropped=0)
        tf = self.config.timeframe
        # Alpaca stamps a daily bar at New York midnight, before the session open we move it to.
        ask_start = start - dt.timedelta(days=1) if tf == "1d" else start
        client = self._client()
        raw: list[tuple[str, list[dict]]] = []
        for chunk in _chunks(self.config.symbols, self.config.symbols_per_request):
            raw.extend(self._fetch_chunk(client, chunk, ask_start, end, what=_what(chunk, start, end)).items())
        bars = _frame(raw, tf)
        if tf == "1d":
            bars = _stamp_daily_at_open(bars)
        delta = timeframe_delta(tf)
        bars = bars.filter(pl.col("ts").is_between(start, end, closed="left") & (pl.col("ts") + delta <= now))
        dropped = 0
        if tf != "1d":
            kept = _regular_hours(bars, delta)
            dropped, bars = bars.height - kept.height, kept
        bars = bars.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("source_row"))
        return self._batch(bars, dropped=dropped)

    def _batch(self, bars: pl.DataFrame, *, dropped: int) -> SourceBatch:
        notes = {} if self.config.timeframe == "1d" else {"extended_hours_bars_dropped": str(dropped)}
        return SourceBatch(bars=conform(bars), label=self.name, notes=notes)

    def _client(self) -> StockHistoricalDataClient:
        client = StockHistoricalDataClient(
            self._api_key, self._secret_key, raw_data=True, url_override=self.config.base_url
        )
        # alpaca-py retries 429/504 itself, 3 times with fixed 3 s sleeps, and
        # StockHistoricalDataClient does not pass retry settings through (RESTClient
        # would also ignore retry_attempts=0 as falsy). Our own retry below replaces it.
        client._retry = 0
        # alpaca-py sends requests without a timeout: a silent server would hang the run.
        adapter = _TimeoutAdapter(self.config.timeout_seconds)
        client._session.mount("http://", adapter)
        client._session.mount("https://", adapter)
        return client

    def _fetch_chunk(
        self,
        client: StockHistoricalDataClient,
        symbols: Sequence[str],
        start: dt.datetime,
        end: dt.datetime,
        *,
        what: str,
    ) -> dict[str, list[dict]]:
        request = StockBarsRequest(
            symbol_or_symbols=list(symbols),
            timeframe=TimeFrame(*ALPACA_TIMEFRAMES[self.config.timeframe]),
            start=start,
            end=end,
            feed=DataFeed(self.config.feed),
            adjustment=Adjustment(self.config.adjustment),
        )
        # get_stock_bars pages by calling client.get once per page: retrying there
        # retries one page, not the whole walk. The instance attribute shadows the method.
        plain_get = StockHistoricalDataClient.get.__get__(client)
        client.get = functools.partial(self._with_retry, plain_get, what)
        try:
            return client.get_stock_bars(request) or {}
        except (APIError, requests.RequestException) as err:  # only if a newer alpaca-py bypasses client.get
            raise self._error(err, what) from err

    def _with_retry(self, call: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> Any:
        attempts = self.config.max_attempts
        for attempt in range(attempts):
            try:
                return call(*args, **kwargs)
            except APIError as err:
                status = err.status_code
                if status not in _RETRY_STATUSES:
                    raise self._error(err, what) from err
                if attempt + 1 == attempts:
                    raise SourceError(f"alpaca: {what} {_exhausted(status, attempts)}") from err
                retry_after = err.response.headers.get("Retry-After") if err.response is not None else None
                delay = retry_delay(attempt, self.config.backoff_seconds, retry_after)
                log.warning(
                    "alpaca: %s HTTP %s, retry %d of %d in %.2f s", what, status, attempt + 1, attempts - 1, delay
                )
                time.sleep(delay)
            except requests.RequestException as err:
                raise self._error(err, what) from err
        raise AssertionError("unreachable")  # the loop returns or raises

    def _error(self, err: Exception, what: str) -> SourceError:
        host = urlsplit(self.config.base_url).netloc
        if isinstance(err, requests.Timeout):
            return SourceError(f"alpaca: {what} got no answer from {host} within {self.config.timeout_seconds:g} s")
        if isinstance(err, requests.ConnectionError):
            reason = f"cannot reach {host} ({type(err).__name__}); check the network or url_override"
            return SourceError(f"alpaca: {what} {reason}")
        if not isinstance(err, APIError):
            return SourceError(f"alpaca: {what} failed talking to {host} ({type(err).__name__})")
        status, message = err.status_code, _message(err)
        if status in (401, 403):
            reason = (
                f"API keys refused (HTTP {status}: {message}); check ALPACA_API_KEY and ALPACA_SECRET_KEY "
                f"and that your plan includes feed {self.config.feed!r}"
            )
        elif status is not None and status >= 500:
            reason = f"failed: alpaca server error HTTP {status}: {message}"
        else:
            reason = f"rejected (HTTP {status}: {message})"
        return SourceError(f"alpaca: {what} {reason}")


class _TimeoutAdapter(HTTPAdapter):
    """An adapter that applies a default timeout to requests sent without one."""

    def __init__(self, timeout: float):
        super().__init__()
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, timeout: Any = None, **kwargs: Any) -> requests.Response:
        return super().send(request, timeout=self._timeout if timeout is None else timeout, **kwargs)


def retry_delay(attempt: int, backoff_seconds: float, retry_after: str | None) -> float:
    """Seconds to wait before retry ``attempt + 1``: a numeric ``Retry-After`` wins, else exponential backoff.

    Example:
        >>> retry_delay(2, 1.0, None), retry_delay(2, 1.0, "5"), retry_delay(0, 1.0, "3600")
        (4.0, 5.0, 60.0)
    """
    try:
        seconds = float(retry_after) if retry_after is not None else math.nan
    except ValueError:  # the HTTP-date form; Alpaca sends seconds
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        seconds = backoff_seconds * 2**attempt
    return min(seconds, _MAX_DELAY_SECONDS)


def _exhausted(status: int, attempts: int) -> str:
    if status == 429:
        return f"rate limited (HTTP 429) after {attempts} attempts; try again later or lower the request rate"
    return f"timed out at alpaca's gateway (HTTP {status}) after {attempts} attempts; try again later"


def _message(err: APIError) -> str:
    """Alpaca's error message (its JSON ``message``, else the body), on one short line."""
    body = str(err)
    try:
        message = json.loads(body)["message"]
    except (ValueError, TypeError, KeyError):
        message = body
    text = " ".join(str(message).split()) or (err.response.reason if err.response is not None else "") or "no message"
    return text if len(text) <= 200 else text[:197] + "..."


def _what(symbols: Sequence[str], start: dt.datetime, end: dt.datetime) -> str:
    """The request in an error message: ``GET /v2/stocks/bars (symbols AAA,BBB 2024-01-02..2024-01-03)``."""
    shown = ",".join(symbols[:5]) + (f",... (+{len(symbols) - 5} more)" if len(symbols) > 5 else "")
    a, b = (t.astimezone(dt.UTC) for t in (start, end))
    if a.time() == b.time() == dt.time(0):
        span = f"{a.date()}..{b.date()}"
    else:
        span = f"{a:%Y-%m-%dT%H:%MZ}..{b:%Y-%m-%dT%H:%MZ}"
    return f"{_PATH} (symbols {shown} {span})"


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _frame(raw: list[tuple[str, list[dict]]], timeframe: str) -> pl.DataFrame:
    """Alpaca's raw bars (``{"t", "o", "h", "l", "c", "v", "n", "vw"}`` per bar) as source columns."""
    parts = [
        pl.from_dicts(bars, schema=_RAW_SCHEMA).with_columns(pl.lit(symbol).alias("symbol"))
        for symbol, bars in raw
        if bars
    ]
    if not parts:
        return empty_source_frame()
    return pl.concat(parts).select(
        "symbol",
        pl.lit(timeframe).alias("timeframe"),
        pl.col("t").str.to_datetime(time_unit="us", time_zone="UTC").alias("ts"),
        pl.col("o").alias("open"),
        pl.col("h").alias("high"),
        pl.col("l").alias("low"),
        pl.col("c").alias("close"),
        pl.col("v").alias("volume"),
        pl.col("vw").alias("vwap"),
        pl.col("n").alias("trade_count"),
        pl.lit("alpaca").alias("source"),
    )


def _with_session(bars: pl.DataFrame) -> pl.DataFrame:
    """Add ``_local`` (New York time), ``open_ts`` and ``close_ts`` of the XNYS session on that date (null if none)."""
    local = bars.with_columns(pl.col("ts").dt.convert_time_zone(_NEW_YORK).alias("_local"))
    days = local["_local"].dt.date()
    cal = sessions("XNYS", days.min(), days.max()).select("session", "open_ts", "close_ts")
    return local.with_columns(days.alias("session")).join(cal, on="session", how="left", maintain_order="left")


def _stamp_daily_at_open(bars: pl.DataFrame) -> pl.DataFrame:
    """Move each daily bar from New York midnight to the XNYS open of its session."""
    if bars.is_empty():
        return bars
    df = _with_session(bars)
    at_midnight = pl.col("_local").dt.time() == dt.time(0)
    ts = pl.when(at_midnight & pl.col("open_ts").is_not_null()).then(pl.col("open_ts")).otherwise(pl.col("ts"))
    return df.with_columns(ts.cast(UTC_TS).alias("ts")).select(bars.columns)


def _regular_hours(bars: pl.DataFrame, delta: dt.timedelta) -> pl.DataFrame:
    """Intraday bars whose interval overlaps an XNYS regular session."""
    if bars.is_empty():
        return bars
    df = _with_session(bars)
    overlaps = (pl.col("ts") < pl.col("close_ts")) & (pl.col("ts") + delta > pl.col("open_ts"))
    return df.filter(overlaps.fill_null(False)).select(bars.columns)
