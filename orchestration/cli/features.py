"""``alphaline features``: the feature catalogue, rebuilding features, and looking at what Feast serves.

Examples::

    alphaline features describe              # every feature: family, window, definition
    alphaline features describe --family vol
    alphaline features build                 # recompute features + labels, apply Feast, materialise online
    alphaline features sample --rows 5       # a training frame from Feast's point-in-time join
    alphaline features online AAA BBB        # what the online store serves now
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import click
import polars as pl

from orchestration.errors import ConfigError
from orchestration.runner import run_job
from orchestration.settings import Settings, prepare_environment

SAMPLE_COLUMNS = ("symbol", "event_timestamp", "ret_log_4", "tech_rsi_14", "vol_parkinson_26", "xs_rank_ret_26", "label_fwd_ret_4")


@click.group()
def features() -> None:
    """The feature library and the Feast feature store."""


@features.command()
@click.option("--family", help="Only this family (ret, vol, tech, trend, band, volu, sess, xs).")
def describe(family: str | None) -> None:
    """List every feature with its family, window and definition."""
    from feature_repo import FAMILIES
    from feature_repo import describe as catalogue
    from feature_repo.definitions import FAMILY_TITLES

    table = catalogue()
    if family is not None:
        if family not in FAMILIES:
            raise click.BadParameter(f"{family!r} is not a family (choose one of {', '.join(FAMILIES)})", param_hint="--family")
        table = table.filter(pl.col("family") == family)
    for fam in dict.fromkeys(table["family"].to_list()):
        click.echo(f"\n{fam} — {FAMILY_TITLES[fam]} (feature view bar_{fam})")
        for row in table.filter(pl.col("family") == fam).iter_rows(named=True):
            window = f"{row['window']} {row['unit']}"
            click.echo(f"  {row['name']:<20} {window:<11} warm-up {row['warmup']:>3}  {row['definition']}")
    click.echo(f"\n{table.height} features; labels (never online): label_fwd_ret_{{1,4,26}}, label_fwd_sign_{{1,4,26}}")


@features.command()
@click.option("--incremental", is_flag=True, help="Only the newest bars (what the intraday schedule does).")
def build(incremental: bool) -> None:
    """Recompute features and labels from marts.bars, apply the Feast repo and materialise online."""
    settings = prepare_environment(Settings())
    from orchestration.defs.features.schedules import FEATURES_JOB, INCREMENTAL

    run_job(FEATURES_JOB, run_config=INCREMENTAL if incremental else None)
    print_summary(settings)


@features.command()
@click.option("--rows", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--sessions", default=1, show_default=True, type=click.IntRange(1, 500), help="Trailing sessions to join.")
def sample(rows: int, sessions: int) -> None:
    """Build a training frame for the last sessions through Feast's point-in-time join and print it."""
    settings = prepare_environment(Settings())
    _print_sample(settings, rows=rows, sessions=sessions)


@features.command()
@click.argument("symbols", nargs=-1, required=True)
def online(symbols: tuple[str, ...]) -> None:
    """Show the online store's feature vector for SYMBOLS (what serving scores)."""
    settings = prepare_environment(Settings())
    from feature_repo.store import offline_dir, online_features, open_store

    wanted = list(dict.fromkeys(s.upper() for s in symbols))  # a repeated symbol would repeat a column
    known = _feature_universe(offline_dir(settings.home))
    _refuse_unknown([s for s in wanted if s not in known], known)  # before Feast: a typo costs no store start-up
    frame = online_features(open_store(settings.home, settings.feast_config), wanted)
    # Feast answers an entity it has no row for with nulls: such a symbol is unknown to the online store.
    served = set(frame.filter(pl.any_horizontal(pl.col("^ts_.*$").is_not_null()))["symbol"].to_list())
    _refuse_unknown([s for s in wanted if s not in served], known)
    with pl.Config(tbl_rows=100, tbl_cols=8, fmt_str_lengths=30):
        click.echo(frame.transpose(include_header=True, header_name="feature", column_names="symbol"))


def _feature_universe(offline: Path) -> set[str]:
    """Symbols with features (the spine's), or a one-line error when nothing was built yet."""
    from feature_repo.store import spine_path

    if not spine_path(offline).exists():
        raise ConfigError(f"{spine_path(offline)}: no features yet; run `alphaline demo` or `alphaline features build`")
    return set(pl.scan_parquet(spine_path(offline)).select("symbol").unique().collect()["symbol"].to_list())


def _refuse_unknown(unknown: list[str], known: set[str]) -> None:
    if unknown:
        raise ConfigError(f"features online: unknown symbol(s) {', '.join(unknown)} (known: {_listing(sorted(known))})")


def _listing(symbols: list[str], shown: int = 8) -> str:
    """``AAA, BBB, … 48 symbols``: enough to spot a typo without flooding the terminal."""
    if not symbols:
        return "none"
    if len(symbols) <= shown:
        return f"{', '.join(symbols)}; {len(symbols)} symbol{'s' if len(symbols) != 1 else ''}"
    return f"{', '.join(symbols[:shown])}, … {len(symbols)} symbols"


def print_summary(settings: Settings) -> None:
    """Coverage of the offline features, the online store, and a sample training frame."""
    from feature_repo import FEATURE_NAMES
    from feature_repo.store import offline_dir, online_features, open_store, read_features

    stored = read_features(offline_dir(settings.home))
    warm = stored.filter(~pl.col("warmup"))
    worst = warm.select([pl.col(n).is_null().mean() for n in FEATURE_NAMES]).transpose().max().item() if warm.height else 0.0
    click.echo("\nFeatures (Feast offline: $ALPHALINE_HOME/feast/offline/)")
    click.echo(f"  {len(FEATURE_NAMES)} features × {stored.height:,} bars, {stored['symbol'].n_unique()} symbols; "
               f"{stored.height - warm.height:,} warm-up rows flagged; worst null share after warm-up {worst:.3%}")
    symbols = stored["symbol"].unique().sort().to_list()
    live = online_features(open_store(settings.home, settings.feast_config), symbols)
    latest = live["ts_bar_ret"].max()
    click.echo(f"  online store: {live.filter(pl.col('ts_bar_ret').is_not_null()).height}/{len(symbols)} symbols at {latest}")
    _print_sample(settings, rows=4, sessions=1)


def _print_sample(settings: Settings, *, rows: int, sessions: int) -> None:
    from feature_repo.store import offline_dir, open_store, spine_path, training_set

    offline = offline_dir(settings.home)
    if not spine_path(offline).exists():
        raise ConfigError(f"{spine_path(offline)}: no features yet; run `alphaline demo` or `alphaline features build`")
    times = pl.read_parquet(spine_path(offline), columns=["event_timestamp"])["event_timestamp"]
    sessions_seen = times.dt.convert_time_zone("America/New_York").dt.date().unique().sort()
    start_day = sessions_seen[-min(sessions, len(sessions_seen))]
    start = dt.datetime.combine(start_day, dt.time(), tzinfo=dt.UTC)
    t0 = time.monotonic()
    frame = training_set(open_store(settings.home, settings.feast_config), offline, start=start)
    took = time.monotonic() - t0
    click.echo(f"  training frame via Feast get_historical_features since {start_day}: {frame.height:,} rows × "
               f"{frame.width} columns in {took:.1f}s (labels null past the end of the data)")
    with pl.Config(tbl_rows=rows, tbl_cols=len(SAMPLE_COLUMNS), tbl_width_chars=140, float_precision=5):
        click.echo(frame.select(SAMPLE_COLUMNS).sample(min(rows, frame.height), seed=0).sort("symbol", "event_timestamp"))
