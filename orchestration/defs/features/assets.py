"""Feature assets: polars features and labels from the clean bars, the Feast registry and the online store.

``bar_features`` / ``bar_labels`` write Parquet under ``$ALPHALINE_HOME/feast/offline`` (the features also
to Feast's offline tables on PostgreSQL in the servers profile);
``feast_registry`` applies the repo's definitions; ``online_features`` materialises
the newest values into the online store. With ``incremental: true`` (the intraday
schedule), features are computed on a trailing window of bars and only new bars are
appended, so a 15-minute update does not recompute the year.
"""


import datetime as dt
import math

import dagster as dg
import polars as pl

from feature_repo import FEATURE_NAMES, FeatureInputError, compute_features, compute_labels
from feature_repo import store as feast_store
from feature_repo.library import INCREMENTAL_LOOKBACK_BARS
from orchestration.resources import FeatureStoreResource
from orchestration.warehouse import Session
from orchestration.warehouse.resource import WarehouseResource

GROUP = "features"
MARTS_BARS = dg.AssetKey(["marts", "bars"])
MIN_LOOKBACK_SESSIONS = 40  # relative volume needs 20 prior sessions; keep a margin

_BARS_SQL = """
select b.symbol, b.sector, b.ts, b.close_ts, b.session,
       s.open_ts as session_open, s.close_ts as session_close,
       b.adj_open as open, b.adj_high as high, b.adj_low as low, b.adj_close as close,
       b.adj_volume as volume, b.adj_vwap as vwap
from marts.bars b
join raw.sessions s on s.calendar = b.calendar and s.session = b.session
where b.timeframe = ? and b.session >= ?
order by b.symbol, b.ts
"""


class FeatureBuildConfig(dg.Config):
    """``incremental``: compute on the last sessions only and append new bars (the intraday schedule sets it)."""

    incremental: bool = False


def _lookback_start(con: Session, timeframe: str) -> dt.date | None:
    """First session of the trailing window an incremental update recomputes."""
    row = con.fetchone(
        "select count(*) * 1.0 / nullif(count(distinct symbol || cast(session as varchar)), 0), max(session) "
        "from marts.bars where timeframe = ?",
        [timeframe],
    )
    if row is None or row[0] is None:
        return None
    per_session = max(float(row[0]), 1.0)
    sessions = max(MIN_LOOKBACK_SESSIONS, math.ceil(INCREMENTAL_LOOKBACK_BARS / per_session))
    found = con.fetchone(
        "select min(session) from (select distinct session from marts.bars where timeframe = ? "
        "order by session desc limit ?) newest",
        [timeframe, sessions],
    )
    return found[0] if found else None


def load_bars(warehouse: WarehouseResource, timeframe: str, *, incremental: bool) -> tuple[pl.DataFrame, bool]:
    """Clean bars of ``timeframe`` with their session's open and close; the trailing window when incremental.

    Prices and volume are adjusted for splits and cash dividends (``marts.bars`` ``adj_*``): a 2-for-1 split is
    not a -50% return in a feature or a label. Adjustment is backward, so history is restated as of the data's
    end when an action arrives (standard practice); a return that does not span an ex-date is unchanged by it,
    and one that does becomes the economic return, so no label learns from the action itself.

    Returns the bars and whether they are a window (incremental) or the full history.
    """
    with warehouse.get_connection() as con:
        if not con.table_exists("marts", "bars"):
            raise _fail(FeatureInputError("marts.bars does not exist yet: ingest bars first (alphaline demo / alphaline ingest)"))
        since = _lookback_start(con, timeframe) if incremental else None
        bars = con.read(_BARS_SQL, [timeframe, since or dt.date(1900, 1, 1)])  # time stamps in UTC (the session's promise)
    return bars, since is not None


def _fail(err: Exception) -> dg.Failure:
    return dg.Failure(description=str(err), allow_retries=False)


def _coverage_metadata(features: pl.DataFrame) -> dict[str, dg.MetadataValue]:
    warm = features.filter(~pl.col("warmup"))
    null_share = (
        warm.select([pl.col(n).null_count() / max(warm.height, 1) for n in FEATURE_NAMES]).row(0) if warm.height else []
    )
    worst = sorted(zip(FEATURE_NAMES, null_share, strict=False), key=lambda kv: -kv[1])[:5]
    return {
        "dagster/row_count": dg.MetadataValue.int(features.height),
        "symbols": dg.MetadataValue.int(features["symbol"].n_unique()),
        "features": dg.MetadataValue.int(len(FEATURE_NAMES)),
        "warmup_rows": dg.MetadataValue.int(features.height - warm.height),
        "first_bar": dg.MetadataValue.text(str(features["event_timestamp"].min())),
        "last_bar": dg.MetadataValue.text(str(features["event_timestamp"].max())),
        "null_share_after_warmup_worst": dg.MetadataValue.json({k: round(v, 6) for k, v in worst}),
    }


@dg.asset(
    deps=[MARTS_BARS],
    group_name=GROUP,
    kinds={"polars", "parquet"},
    description=(
        "The feature library (feature_repo/library.py, `alphaline features describe`) for every bar of the "
        "universe, written per family to $ALPHALINE_HOME/feast/offline/ for Feast. event_timestamp = the bar's "
        "close; warm-up rows are flagged, never filled."
    ),
)
def bar_features(
    context: dg.AssetExecutionContext, config: FeatureBuildConfig, warehouse: WarehouseResource, features: FeatureStoreResource
) -> dg.MaterializeResult:
    bars, windowed = load_bars(warehouse, features.timeframe, incremental=config.incremental)
    try:
        frame = compute_features(bars, bar_length=features.bar_length)
    except FeatureInputError as err:
        raise _fail(err) from None
    if windowed:
        added = feast_store.merge_features(frame, features.offline, tables=features.tables())
        context.log.info(f"incremental: {added} new feature row(s) from a window of {bars.height} bars")
    else:
        feast_store.write_features(frame, features.offline, tables=features.tables())
    stored = feast_store.read_features(features.offline) if windowed else frame
    return dg.MaterializeResult(metadata={**_coverage_metadata(stored), "mode": "incremental" if windowed else "full"})


@dg.asset(
    deps=[MARTS_BARS],
    group_name=GROUP,
    kinds={"polars", "parquet"},
    description=(
        "Forward log returns over 1, 4 and 26 bars from each bar's close and their signs "
        "($ALPHALINE_HOME/feast/offline/labels.parquet). Null where the horizon runs past the data; never served online."
    ),
)
def bar_labels(config: FeatureBuildConfig, warehouse: WarehouseResource, features: FeatureStoreResource) -> dg.MaterializeResult:
    bars, windowed = load_bars(warehouse, features.timeframe, incremental=config.incremental)
    if bars.is_empty():
        raise _fail(FeatureInputError(f"marts.bars: no {features.timeframe} bars to label; ingest bars first"))
    labels = compute_labels(bars)
    if windowed:
        feast_store.merge_labels(labels, features.offline)
    else:
        feast_store.write_labels(labels, features.offline)
    nulls = {c: labels[c].null_count() for c in labels.columns if c.startswith("label_fwd_ret")}
    return dg.MaterializeResult(metadata={"dagster/row_count": labels.height, "null_labels": dg.MetadataValue.json(nulls)})


@dg.asset(
    deps=[bar_features],
    group_name=GROUP,
    kinds={"feast"},
    description="Feast registry: entity `symbol`, one Parquet source and feature view per family, feature service `model_inputs`.",
)
def feast_registry(features: FeatureStoreResource) -> dg.MaterializeResult:
    store = features.store()
    views = feast_store.apply(store, features.offline, bar_length=features.bar_length)
    return dg.MaterializeResult(
        metadata={
            "feature_views": dg.MetadataValue.json(views),
            "feature_service": feast_store.SERVICE,
            "features": len(FEATURE_NAMES),
            "ttl": str(store.get_feature_view(views[0]).ttl),
            "registry": str(store.config.registry.path),
        }
    )


@dg.asset(
    deps=[feast_registry, bar_features],
    group_name=GROUP,
    kinds={"feast", "sqlite"},
    description="Latest feature values per symbol in the Feast online store (incremental materialisation).",
)
def online_features(context: dg.AssetExecutionContext, features: FeatureStoreResource) -> dg.MaterializeResult:
    store = features.store()
    spine = pl.read_parquet(feast_store.spine_path(features.offline), columns=["event_timestamp"])
    latest = spine["event_timestamp"].max()
    start, end = feast_store.materialize(store, end=latest + dt.timedelta(microseconds=1))
    context.log.info(f"materialised {start} .. {end}")
    return dg.MaterializeResult(
        metadata={
            "interval_start": str(start),
            "interval_end": str(end),
            "latest_bar": str(latest),
            "online_store": str(store.config.online_store.path) if hasattr(store.config.online_store, "path") else "redis",
        }
    )
