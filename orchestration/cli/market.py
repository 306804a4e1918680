"""``alphaline market``: live market data.

Examples::

    alphaline market stream --symbols AAPL,MSFT              # 15-minute bars into raw.bars, until Ctrl-C
    alphaline market stream --symbols AAPL --windows 4       # stop after four bars were written
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

import click

from orchestration.errors import ConfigError
from orchestration.settings import Settings, prepare_environment

if TYPE_CHECKING:
    from orchestration.market.warehouse import BatchReport


@click.group()
def market() -> None:
    """Live market data from Alpaca."""


@market.command()
@click.option("--symbols", required=True, help="Comma-separated stock tickers, e.g. AAPL,MSFT.")
@click.option("--timeframe", default="15m", show_default=True, type=click.Choice(["1m", "5m", "15m", "1h"]),
              help="Bars written to raw.bars (built from Alpaca's 1-minute bars).")
@click.option("--feed", default="iex", show_default=True, type=click.Choice(["iex", "sip"]), help="Alpaca data feed.")
@click.option("--windows", type=click.IntRange(1), default=None, help="Stop after this many windows were written.")
@click.option("--url-override", default=None, help="REST base URL for the backfill (a proxy or a test server).")
@click.option("--stream-url", default=None, help="Websocket URL of the bar stream (a proxy or a test server).")
@click.option("--features/--no-features", default=False, show_default=True,
              help="After each bar written: rebuild the marts and update the features (Dagster job streamed_bars_job).")
def stream(symbols: str, timeframe: str, feed: str, windows: int | None, url_override: str | None,
           stream_url: str | None, features: bool) -> None:
    """Stream Alpaca's minute bars and write each closed bar of TIMEFRAME to raw.bars (run it next to the trader).

    Bars go through the same validation as every ingest (bad ones to raw.bars_rejected with their reason);
    minutes missed while disconnected are read over REST before a bar is written. With --features the
    marts and features follow each bar (one Dagster run each); otherwise on the next scheduled run.
    """
    from orchestration.market.alpaca import AlpacaConfig
    from orchestration.market.stream import BarStreamer
    from orchestration.warehouse import Warehouse

    names = tuple(s.strip().upper() for s in symbols.split(",") if s.strip())
    if not (os.environ.get("ALPACA_API_KEY") and os.environ.get("ALPACA_SECRET_KEY")):
        raise ConfigError("market stream needs ALPACA_API_KEY and ALPACA_SECRET_KEY in the environment")
    settings = prepare_environment(Settings())
    config = AlpacaConfig(symbols=names, timeframe=timeframe, feed=feed, url_override=url_override)
    warehouse = Warehouse.for_settings(settings)
    streamer = BarStreamer(config, warehouse=warehouse, stream_url=stream_url).start()
    click.echo(f"Streaming {timeframe} bars of {', '.join(names)} into {warehouse.describe()} (Ctrl-C stops)")
    stop = threading.Event()
    try:
        streamer.run(stop=stop, windows=windows, on_report=lambda report: _written(report, features=features))
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        stop.set()
        logging.getLogger("alpaca").setLevel(logging.ERROR)  # closing the socket is not a "websocket error" to report
        streamer.close()


def _written(report: BatchReport, *, features: bool) -> None:
    rejected = f", {report.rows_rejected} rejected ({report.describe_rejects()})" if report.rows_rejected else ""
    click.echo(f"  {report.first_ts:%Y-%m-%d %H:%M}Z  {report.rows_accepted} bar(s) written{rejected}  batch {report.batch_id}")
    if features and report.rows_accepted:
        from orchestration.defs.market.schedules import STREAM_JOB
        from orchestration.runner import run_job

        run_job(STREAM_JOB)
