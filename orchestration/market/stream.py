"""Live bars: alpaca-py's ``StockDataStream`` minute bars, written to ``raw.bars`` as bars of the platform timeframe.

:class:`BarStreamer` runs the stream in a background thread and, on every :meth:`~BarStreamer.step`,
folds the minutes received into windows (:class:`~orchestration.market.minute_bars.MinuteAggregator`)
and writes each closed window through :func:`~orchestration.market.warehouse.ingest_batch` — the
same validation and quarantine as every other source (asset ``streamed_bars``, source
``alpaca-stream``). A window that overlaps a time the stream was not listening (before the first
connection, or between a disconnect and alpaca-py's reconnect) or holds a malformed minute is
completed from REST (:class:`~orchestration.market.alpaca.AlpacaSource`, ``1m``) before its bar is
written. ``marts.bars`` keeps the latest batch of a key, so the daily REST ingest still has the last word.

The warehouse (:class:`~orchestration.warehouse.Warehouse`: DuckDB, or PostgreSQL in the servers profile) is
opened only to write a window (DuckDB allows one writer process at a time), and a window whose write finds the
file locked is kept and written on a later step.

Run it next to the trader (keys from ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``)::

    alphaline market stream --symbols AAPL,MSFT          # 15-minute bars, until Ctrl-C
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
from alpaca.data.enums import DataFeed
from alpaca.data.live.stock import StockDataStream

from orchestration.errors import SourceError
from orchestration.market.alpaca import AlpacaConfig, AlpacaSource
from orchestration.market.bars import SourceBatch
from orchestration.market.minute_bars import STREAM_SOURCE, MinuteAggregator, Window, from_alpaca_message, window_batch
from orchestration.market.warehouse import BatchReport, ingest_batch
from orchestration.warehouse import Warehouse, WarehouseBusy

log = logging.getLogger(__name__)
ASSET = "streamed_bars"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _one_line(record: logging.LogRecord) -> bool:
    """alpaca-py logs a full traceback on every failed reconnect; the message alone says it (and REST backfills)."""
    record.exc_info, record.exc_text = None, None
    return True


class _Stream(StockDataStream):
    """alpaca-py's data stream, reporting when it starts and stops listening, and stoppable at once."""

    def __init__(self, *args: Any, on_listen: Callable[[], None], on_drop: Callable[[], None], min_backoff_s: float,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._on_listen, self._on_drop = on_listen, on_drop
        self._reconnect_min_backoff = min_backoff_s

    async def _send_subscribe_msg(self) -> None:
        await super()._send_subscribe_msg()
        if not self._running:  # a (re)connection, not a later subscription change
            self._on_listen()

    async def close(self) -> None:
        if self._ws is not None:
            self._on_drop()
        await super().close()

    async def _shutdown(self) -> None:
        await self.stop_ws()
        await self.close()


class BarStreamer:
    """Streams minute bars of ``config.symbols`` and writes ``config.timeframe`` bars to the warehouse.

    Args:
        config: symbols, timeframe (``1m``/``5m``/``15m``/``1h``), feed, and the REST ``url_override``.
        warehouse: where bars go (:class:`~orchestration.warehouse.Warehouse`, or the DuckDB file's path).
        stream_url: the market-data websocket URL (default: Alpaca's for ``config.feed``).
        api_key, secret_key: default to ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``.
        grace: how long after a window's end its last minute may still arrive.
        min_backoff_s: first wait before alpaca-py reconnects.

    Example::

        streamer = BarStreamer(AlpacaConfig(symbols=("AAPL",)), warehouse="warehouse.duckdb").start()
        reports = streamer.step()   # the windows that closed since, each written once
    """

    def __init__(self, config: AlpacaConfig, *, warehouse: Warehouse | str | Path, stream_url: str | None = None,
                 api_key: str | None = None, secret_key: str | None = None, grace: dt.timedelta = dt.timedelta(seconds=5),
                 min_backoff_s: float = 1.0, clock: Callable[[], dt.datetime] = _utcnow):
        self.config, self._clock = config, clock
        self.warehouse = warehouse if isinstance(warehouse, Warehouse) else Warehouse(warehouse)
        self._rest = AlpacaSource(replace(config, timeframe="1m"), api_key=api_key, secret_key=secret_key)
        self.aggregator = MinuteAggregator(list(config.symbols), config.timeframe, grace=grace)
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()  # ("bar", msg) | ("listen"|"drop", time)
        self._pending: list[Window] = []  # closed windows whose write must be retried
        self.connections = 0  # listening sessions, counted as the steps see them
        self.received = 0  # bar messages received (by the stream thread)
        self.drops = 0  # connections lost (by the stream thread)
        self._queue.put(("drop", clock()))  # not listening yet: the current window is completed from REST
        key, secret = api_key or os.environ["ALPACA_API_KEY"], secret_key or os.environ["ALPACA_SECRET_KEY"]  # checked above
        self._stream = _Stream(key, secret, raw_data=True, feed=DataFeed(config.feed),
                               url_override=stream_url, min_backoff_s=min_backoff_s,
                               on_listen=lambda: self._queue.put(("listen", self._clock())),
                               on_drop=self._dropped)
        self._stream.subscribe_bars(self._on_bar, *config.symbols)
        self._thread = threading.Thread(target=self._stream.run, name="alpaca-bars", daemon=True)
        stream_log = logging.getLogger("alpaca.data.live.websocket")
        if _one_line not in stream_log.filters:
            stream_log.addFilter(_one_line)

    def start(self) -> BarStreamer:
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        loop = self._stream._loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self._stream._shutdown(), loop).result(timeout)
        self._thread.join(timeout)

    async def _on_bar(self, msg: dict[str, Any]) -> None:
        self.received += 1
        self._queue.put(("bar", msg))

    def _dropped(self) -> None:
        self.drops += 1
        self._queue.put(("drop", self._clock()))

    def step(self, now: dt.datetime | None = None) -> list[BatchReport]:
        """Take in what arrived, then write every window closed by ``now``; returns the batches written."""
        self._drain()
        now = now or self._clock()
        windows, self._pending = self._pending + self.aggregator.due(now), []
        reports = []
        for window in windows:
            try:
                report = self._write(window, now)
            except _Retry:
                self._pending.append(window)
                continue
            if report is not None:
                reports.append(report)
        return reports

    def run(self, *, stop: threading.Event, every_s: float = 1.0, on_report: Callable[[BatchReport], None] = lambda r: None,
            windows: int | None = None) -> None:
        """:meth:`step` every ``every_s`` seconds until ``stop`` is set (or ``windows`` batches were written)."""
        written = 0
        while not stop.is_set() and (windows is None or written < windows):
            for report in self.step():
                on_report(report)
                written += 1
            stop.wait(every_s)

    def _drain(self) -> None:
        while True:
            try:
                kind, item = self._queue.get_nowait()
            except queue.Empty:
                return
            if kind == "bar":
                self.aggregator.add(from_alpaca_message(item))
            elif kind == "listen":
                self.connections += 1
                self.aggregator.gap_ended(item)
            else:
                self.aggregator.gap_started(item)

    def _fetch_minutes(self, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
        return self._rest.fetch(start, end, now=self._clock()).bars

    def _write(self, window: Window, now: dt.datetime) -> BatchReport | None:
        """One window's batch into the warehouse (``None``: no trades at all); :class:`_Retry` when it must wait."""
        try:
            bars = window_batch(window, self.config.timeframe, self._fetch_minutes, now=now)
        except SourceError as err:
            log.warning("stream: window %s: REST backfill failed, retrying on the next step: %s", window.start, err)
            raise _Retry from None
        if bars.is_empty():
            log.info("stream: window %s: no trades in any symbol, nothing to write", window.start)
            return None
        batch = SourceBatch(bars=bars, label=STREAM_SOURCE, notes={
            "extended_hours_bars_dropped": str(self.aggregator.extended_hours_dropped)})
        for attempt in range(3):
            try:
                with self.warehouse.connect() as con:
                    return ingest_batch(con, batch, asset=ASSET, now=now)
            except WarehouseBusy as err:  # another process (Dagster) is writing
                log.info("stream: warehouse busy (%s), attempt %d", err, attempt + 1)
                time.sleep(0.2 * (attempt + 1))
        log.warning("stream: window %s: warehouse locked; the window is kept for the next step", window.start)
        raise _Retry


class _Retry(Exception):
    """The window could not be written now (REST or the warehouse unavailable): keep it for the next step."""
