"""``alphaline``: run the pipeline, import data, open the UI.

Every command runs through Dagster (in-process, on the instance under
``$ALPHALINE_HOME/dagster``), so what it did shows up in ``make ui`` afterwards.

Examples::

    alphaline demo                                  # synthetic market, end to end
    alphaline ingest --csv tests/data/sp500_daily.csv.gz   # a real daily index file in the repo
    alphaline ingest --csv bars.csv --symbol AAPL --timeframe 15m --tz America/New_York
    alphaline ingest --synthetic --sessions 5
    alphaline ingest --alpaca --symbols AAPL,MSFT --sessions 3
    alphaline market stream --symbols AAPL,MSFT     # live 15-minute bars into raw.bars
    alphaline status

The top-level commands (``demo``, ``ingest``, ``status``, ``ui``) live here; each command group has its own
module: ``compliance``, ``features``, ``market``, ``models`` and ``ops`` (``backup``, ``restore``, ``drill``).
``demo_trading`` is the demo's last act (serve, trade, close the day). ``python -m orchestration.cli`` is the
same as the ``alphaline`` console script.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click

from orchestration.cli.compliance import compliance
from orchestration.cli.features import features
from orchestration.cli.features import print_summary as print_feature_summary
from orchestration.cli.market import market
from orchestration.cli.models import latest_tearsheet, models
from orchestration.cli.models import print_summary as print_model_summary
from orchestration.cli.ops import backup, drill, restore
from orchestration.errors import AlphalineError, ConfigError
from orchestration.runner import fail, run_job
from orchestration.settings import DEMO_AS_OF, Settings, describe_invalid, prepare_environment, record_first_session, require_folder
from orchestration.warehouse import Warehouse

DEMO_SESSIONS = 250  # about one year of 15-minute bars: ~312k bars for 48 symbols
DEMO_TRAIN_SESSIONS = 120


def _session_range(sessions: int, settings: Settings, end: dt.date | None) -> tuple[str, str]:
    """The last ``sessions`` sessions of the market's calendar (XNYS; crypto: 24/7) up to ``end`` (``None``: the latest complete one by the clock) as partition keys.

    Only ``end=None`` reads the clock; a pinned ``end`` gives the same range on any day.
    """
    from orchestration.market.calendars import sessions as xnys_sessions

    now = dt.datetime.now(dt.UTC)
    last_day = end or now.date()
    calendar = settings.profile.calendar
    s = xnys_sessions(calendar, settings.market_start, last_day)
    if s.is_empty():
        raise ConfigError(f"no {calendar} session between ALPHALINE_MARKET_START={settings.market_start} and {last_day}")
    if end is None:
        s = s.filter(s["close_ts"] <= now)
    elif s["close_ts"][-1] > now:
        raise ConfigError(f"{s['session'][-1]}: that session has not closed yet (bars exist only once they have closed)")
    picked = s["session"].tail(sessions)
    if len(picked) < sessions:
        click.echo(f"  (only {len(picked)} sessions since ALPHALINE_MARKET_START={settings.market_start})")
    return picked[0].isoformat(), picked[-1].isoformat()


def _as_of(value: str | None, default: dt.date | None) -> dt.date | None:
    """``YYYY-MM-DD`` → that day; ``today`` → ``None`` (the latest complete session by the clock); nothing → ``default``."""
    if value is None:
        return default
    if value.strip().lower() == "today":
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"--as-of/--end {value!r}: not a date (YYYY-MM-DD) or 'today'") from None


def _set_aside_earlier_demo(settings: Settings) -> None:
    """Start from an empty ``ALPHALINE_HOME``: the same demo, the same numbers, whatever ran there before.

    An earlier demo's state (its models, trades and sealed compliance records) is moved aside whole, never
    deleted; a home holding a paper or live trader store is refused instead — the demo must not touch an account.
    """
    home = settings.home
    require_folder(settings)
    if not home.exists() or not any(home.iterdir()):
        return
    accounts = sorted(p.name for p in (home / "trader").glob("*.db") if p.name not in ("sim.db", "dry-run.db"))
    if accounts:
        raise ConfigError(f"ALPHALINE_HOME={home} holds trader stores of an account ({', '.join(accounts)}): "
                          "run the demo on its own home, e.g. ALPHALINE_HOME=/tmp/alphaline-demo")
    aside = home.with_name(f"{home.name}.previous-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}")
    home.rename(aside)
    click.echo(f"  earlier state of ALPHALINE_HOME moved aside to {aside} (nothing deleted; remove it when done)")


def _range_tags(start: str, end: str) -> dict[str, str]:
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    return {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="alphaline")
def main() -> None:
    """Alphaline: market data to orders, every step visible in Dagster."""


@main.command()
@click.option("--sessions", default=DEMO_SESSIONS, show_default=True, type=click.IntRange(1, 5000), help="Trading days of history.")
@click.option("--symbols", "n_symbols", default=None, type=click.IntRange(1, 676),
              help="Symbols in the universe [default: 48; crypto: 6 pairs, at most 12].")
@click.option("--market", type=click.Choice(["equities", "crypto"]), default=None,
              help="equities (XNYS sessions) or crypto (24/7 pairs BTC/USD, ...; fractional fills) [default: ALPHALINE_MARKET "
                   "or equities].")
@click.option("--seed", default=7, show_default=True)
@click.option("--as-of", "as_of", default=None, metavar="YYYY-MM-DD|today",
              help=f"Last session of the data [default: {DEMO_AS_OF}, pinned so every day gives the same demo]; "
                   "'today' takes the latest complete session by the clock.")
@click.option("--train/--no-train", default=True, show_default=True, help="Train, gate and register the models after the features.")
@click.option("--train-sessions", default=DEMO_TRAIN_SESSIONS, show_default=True, type=click.IntRange(20, 5000),
              help="Sessions the models train on (the newest, before the held-out one).")
def demo(sessions: int, n_symbols: int | None, market: str | None, seed: int, as_of: str | None, train: bool,
         train_sessions: int) -> None:
    """Run the whole pipeline on the synthetic market and say where to look.

    The same options give the same bars, model metrics, orders and equity on any day:
    the data window ends at ``--as-of`` (pinned in code), never at today's date unless asked.
    """
    if market:
        os.environ["ALPHALINE_MARKET"] = market  # every step (Dagster runs, the trader subprocess) reads the same profile
    settings = Settings()
    n_symbols = n_symbols or (6 if settings.market == "crypto" else 48)
    start, end = _session_range(sessions, settings, _as_of(as_of, DEMO_AS_OF))
    _set_aside_earlier_demo(settings)
    prepare_environment(settings)
    record_first_session(settings, dt.date.fromisoformat(start))  # the partitions begin where the data does
    click.echo(f"Alphaline demo: synthetic {'crypto ' if settings.market == 'crypto' else ''}market, {n_symbols} symbols, seed {seed}, sessions {start} .. {end} (as of {end})")
    click.echo(f"  ALPHALINE_HOME={settings.home}")
    t0 = time.monotonic()
    from orchestration.defs.market.schedules import INGEST_JOB

    run_job(
        INGEST_JOB,
        tags=_range_tags(start, end),
        run_config={"resources": {"market": {"config": {"n_symbols": n_symbols, "seed": seed, "market": settings.market}}}},
    )
    _print_summary(Warehouse.for_settings(settings))
    print_feature_summary(settings)
    if train:
        from orchestration.defs.training.schedules import TRAINING_JOB

        click.echo("\nTraining: purged walk-forward CV of every learner, stacking, backtest, gates, registry ...")
        run_job(TRAINING_JOB, run_config={"resources": {"models": {"config": _demo_training(settings, train_sessions)}}})
        print_model_summary(settings)
        from orchestration.cli.demo_trading import close_the_day, serve_trade_and_close

        serve_trade_and_close(settings)
        close_the_day(settings)
    click.echo(f"\nDone in {time.monotonic() - t0:.0f}s. Where to look:")
    click.echo(f"  warehouse   {Warehouse.for_settings(settings).describe()}  (marts.bars, marts.bars_daily, raw.bars_rejected)")
    click.echo(f"  data docs   {settings.reports_dir / 'data_docs' / 'index.html'}")
    click.echo(f"  features    {settings.feast_dir}  (offline/*.parquet, registry.db, online.db); `alphaline features describe`")
    click.echo(f"  models      {settings.home / 'bentoml' / 'models'}  (BentoML store); `alphaline models list`")
    click.echo(f"  tear sheet  {latest_tearsheet(settings) or settings.reports_dir / '<last training session>' / 'backtest'}")
    click.echo(f"  trading     {settings.home / 'trader' / 'sim.db'}; `trader status --mode sim`, `trader orders --mode sim`, `trader explain ID`")
    click.echo(f"  compliance  {settings.reports_dir}/<date>/ (8949, Schedule D, lots, audit); archive {settings.home / 'archive'}; "
               "`alphaline compliance verify --trader sim`")
    click.echo("  serving     make serve → http://127.0.0.1:3001 (POST /predict, GET /model)")
    click.echo("  Dagster UI  make ui  → http://127.0.0.1:3000 (bars → features → models → serving → trader → compliance; "
               "the tear sheet on model_evaluation)")
    click.echo("  more UIs    make feast-ui → :3002, make docs (dbt) → :3003, make data-docs (Great Expectations) → :3004, "
               "make trader-api MODE=sim → :8080/docs")


@main.command()
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="A CSV/Parquet file or a folder of them.")
@click.option("--synthetic", is_flag=True, help="Ingest sessions of the synthetic market.")
@click.option("--alpaca", is_flag=True, help="Ingest Alpaca historical bars (keys from ALPACA_API_KEY / ALPACA_SECRET_KEY).")
@click.option("--symbol", help="Symbol for files without a symbol column (default: from the file name).")
@click.option("--symbols", help="Comma-separated symbols (with --alpaca).")
@click.option("--timeframe", help="1m, 5m, 15m, 1h or 1d (default: inferred for files, 15m otherwise).")
@click.option("--tz", help="Zone of naive timestamps in the file, e.g. America/New_York.")
@click.option("--sessions", default=1, show_default=True, type=click.IntRange(1, 5000), help="With --synthetic/--alpaca: trading days up to --end.")
@click.option("--end", default=None, metavar="YYYY-MM-DD|today",
              help=f"Last session: synthetic default {DEMO_AS_OF} (the demo's pinned as-of); Alpaca default: today, "
                   "i.e. the latest complete session.")
def ingest(csv_path: Path | None, synthetic: bool, alpaca: bool, symbol: str | None, symbols: str | None,
           timeframe: str | None, tz: str | None, sessions: int, end: str | None) -> None:
    """Ingest bars from a file, the synthetic market or Alpaca; then rebuild the marts."""
    chosen = [name for name, on in (("--csv", csv_path is not None), ("--synthetic", synthetic), ("--alpaca", alpaca)) if on]
    if len(chosen) != 1:
        raise ConfigError("choose exactly one of --csv PATH, --synthetic, --alpaca")
    settings = prepare_environment(Settings())
    from orchestration.defs.market.schedules import IMPORT_JOB, INGEST_JOB

    if csv_path is not None:
        from orchestration.market.files import FileSource

        source = FileSource(csv_path.resolve(), symbol=symbol, timeframe=timeframe, tz=tz)
        batch = source.read()  # fail fast, with file/line/column, before starting a run
        click.echo(f"Importing {batch.bars.height} rows from {csv_path}")
        config = {"paths": [str(csv_path.resolve())], "symbol": symbol, "timeframe": timeframe, "tz": tz}
        run_job(IMPORT_JOB, run_config={"ops": {"imported_bars": {"config": config}}})
    else:
        market: dict[str, Any] = {"timeframe": timeframe or "15m"}
        if alpaca:
            names = [s.strip().upper() for s in (symbols or "").split(",") if s.strip()]
            if not names:
                raise ConfigError("--alpaca needs --symbols, e.g. --symbols AAPL,MSFT")
            if not (os.environ.get("ALPACA_API_KEY") and os.environ.get("ALPACA_SECRET_KEY")):
                raise ConfigError("--alpaca needs ALPACA_API_KEY and ALPACA_SECRET_KEY in the environment")
            market.update(kind="alpaca", alpaca_symbols=names)
        start, last = _session_range(sessions, settings, _as_of(end, None if alpaca else DEMO_AS_OF))
        record_first_session(settings, dt.date.fromisoformat(start))
        click.echo(f"Ingesting {'Alpaca' if alpaca else 'synthetic'} bars for sessions {start} .. {last}")
        run_job(INGEST_JOB, tags=_range_tags(start, last), run_config={"resources": {"market": {"config": market}}})
    _print_summary(Warehouse.for_settings(settings))


@main.command()
def status() -> None:
    """Summarise the warehouse: bars, symbols, sessions, rejects (reads only: creates nothing)."""
    settings = Settings()
    require_folder(settings)
    warehouse = Warehouse.for_settings(settings)
    if warehouse.kind == "duckdb" and not warehouse.exists():
        raise ConfigError(f"no warehouse at {warehouse.describe()}: run `alphaline demo` or `alphaline ingest` first")
    _print_summary(warehouse)


@main.command()
@click.option("--port", default=3000, show_default=True)
def ui(port: int) -> None:
    """Open the Dagster UI (dagster dev) on this project's assets and state.

    Port 3000 by default (``make ui PORT=3100`` for another); ``make serve`` uses 3001 beside it.
    """
    from serving.serve import port_problem

    # dagster dev would only find a taken port after building the manifest, and then say it with a traceback.
    if problem := port_problem("127.0.0.1", port):
        raise ConfigError(problem)
    settings = prepare_environment(Settings())
    from orchestration.defs.market.dbt import dbt_project, prepare_manifest

    prepare_manifest(dbt_project(settings.dbt_target_dir))
    root = Path(__file__).resolve().parents[2]
    dagster = Path(sys.executable).with_name("dagster")
    click.echo(f"Dagster UI on http://127.0.0.1:{port} (state in {settings.dagster_home})")
    os.chdir(root)
    os.execv(str(dagster), [str(dagster), "dev", "-w", str(root / "workspace.yaml"), "-p", str(port), "-h", "127.0.0.1"])


def _print_summary(warehouse: Warehouse) -> None:
    from orchestration.warehouse import WarehouseError

    try:
        with warehouse.connect(read_only=True) as con:
            n, syms, tfs, first, last = con.fetchone(
                "select count(*), count(distinct symbol), string_agg(distinct timeframe, ','), min(ts), max(ts) from marts.bars"
            )
            days = con.scalar("select count(*) from marts.bars_daily")
            raw_n, rejected, batches = con.fetchone(
                "select (select count(*) from raw.bars), (select count(*) from raw.bars_rejected), (select count(*) from raw.batches)"
            )
            reasons = con.fetchall("select reason, count(*) n from raw.bars_rejected group by 1 order by 2 desc limit 3")
    except WarehouseError as err:
        raise ConfigError(f"{err} (run `alphaline demo` or `alphaline ingest` first)") from None
    click.echo("\nWarehouse")
    click.echo(f"  marts.bars        {n:,} bars, {syms} symbols, timeframes {tfs}, {first} .. {last}")
    click.echo(f"  marts.bars_daily  {days:,} symbol-sessions")
    click.echo(f"  raw               {raw_n:,} bars in {batches} batch(es); {rejected:,} rejected row(s) in raw.bars_rejected")
    for reason, count in reasons:
        click.echo(f"                    {count:>6} × {reason}")


main.add_command(features)
main.add_command(market)
main.add_command(models)
main.add_command(compliance)
main.add_command(backup)
main.add_command(restore)
main.add_command(drill)


def _demo_training(settings: Settings, train_sessions: int) -> dict[str, Any]:
    """The demo's training sizes: the full learner family, 3 folds, on 120 sessions by default (a few minutes on 2 cores).

    The newest session is held out: the trader's simulated session trades a day the models never saw.

    ``alphaline models train`` (and the daily schedule) use the resource's defaults: all history, 4 folds.
    """
    return {"home": str(settings.home), "n_folds": 3, "train_sessions": train_sessions, "holdout_sessions": 1}


def run() -> None:
    """Console-script entry: user errors become one line and a non-zero exit, never a traceback."""
    if not os.environ.get("ALPHALINE_DEBUG"):
        warnings.simplefilter("ignore")  # library deprecation notices are not for CLI users
        # ...and stay hidden even when a library resets the filters on import (Feast sets "once").
        warnings.showwarning = lambda *args, **kwargs: None
    from pydantic import ValidationError

    from feature_repo.errors import FeatureInputError, FeatureStoreError
    from models.data import TrainingDataError
    from models.registry import RegistryError

    try:
        main(standalone_mode=True)
    except (AlphalineError, FeatureInputError, FeatureStoreError, RegistryError, TrainingDataError) as err:
        fail(str(err))
    except ValidationError as err:
        if err.title != Settings.__name__:  # a bug elsewhere: keep its traceback
            raise
        fail(describe_invalid(err))
