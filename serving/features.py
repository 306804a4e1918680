"""Where the service's features come from: the Feast online store, or the offline Parquet files as of a moment.

* **Online** (``/predict`` without ``as_of``): one Feast ``get_online_features`` read for
  the whole universe makes a :class:`Snapshot`, kept until the online store changes
  (the SQLite file's size/mtime; other stores: ``online_cache_seconds``). Features
  change once a bar, requests come far more often: one read serves them all. Whatever
  is derived from the snapshot alone (the feature matrix, the universe's scores and
  answers per model) is kept with it (:meth:`Snapshot.memo`) and goes with it, so a
  ``/predict`` is a lookup (``Predictor.quick``) until the store changes.
* **As of** (``/predict`` with ``as_of``): Feast's point-in-time rule applied to the
  offline files Feast itself reads (``feature_repo.store.read_features``): per symbol
  the latest row with ``event_timestamp <= as_of``; a row older than the feature views'
  TTL is what Feast would return as missing, and the service calls it stale. Feast's
  own ``get_historical_features`` gives the same values (a test checks it) but takes
  ~0.5 s per call through DuckDB; a replay asks once per bar.
* **History** (sequence members, ``context > 0``): each symbol's ``context`` offline rows
  before the scored row's ``event_timestamp``.

The offline frame is read once and kept in memory until a file changes (about 8 bytes
× features × rows: ~125 MB for a year of 15-minute bars of 48 symbols); only ``as_of``
requests and sequence models need it.

Example (after ``alphaline demo``)::

    source = FeatureSource(Path(".alphaline"))
    snap = source.online()
    snap.frame.select("symbol", "feature_ts").head()
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import polars as pl

from feature_repo import FAMILIES, FEATURE_NAMES, FeatureStoreError
from feature_repo.definitions import TTL_BARS, offline_path, view_name
from feature_repo.store import KEYS, offline_dir, online_features, open_store, read_features, spine_path
from models.data import matrix

TS_COLUMNS = [f"ts_{view_name(f)}" for f in FAMILIES]
T = TypeVar("T")


@dataclass
class Snapshot:
    """The online features of the whole universe, read at one state of the online store.

    ``frame`` has ``symbol``, every feature, and ``feature_ts``: the oldest of the
    views' timestamps (a prediction is only as fresh as its oldest input), null when a
    view has no row for the symbol. ``newest`` is the newest ``feature_ts`` (the data clock).
    """

    frame: pl.DataFrame
    index: dict[str, int]
    stamps: list[dt.datetime | None]  # feature_ts per row of frame
    newest: dt.datetime | None
    signature: Any
    taken: float
    history: dict[int, dict[str, pl.DataFrame]] = field(default_factory=dict)  # rows → symbol → frame
    _memo: dict[Hashable, Any] = field(default_factory=dict)

    def matrix(self, features: Sequence[str]) -> np.ndarray:
        """The universe's feature matrix in ``features`` order, built once per snapshot (requests pick rows of it)."""
        return self.memo(("matrix", tuple(features)), lambda: read_only(matrix(self.frame, list(features))))

    def memo(self, key: Hashable, build: Callable[[], T]) -> T:
        """``build()``, computed once per snapshot under ``key`` (anything derived from these features alone).

        Two threads may build the same key at once; both get an equal value and one is kept.
        """
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = build()
            return value

    def has(self, key: Hashable) -> bool:
        return key in self._memo


def read_only(x: np.ndarray) -> np.ndarray:
    """``x``, made read-only: a cached array is shared by every request."""
    x.setflags(write=False)
    return x


def _signature(paths: Sequence[Path]) -> tuple[tuple[int, int], ...]:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append((0, -1))
    return tuple(out)


class FeatureSource:
    """Online snapshots, point-in-time offline rows and history for one ``ALPHALINE_HOME``.

    Args:
        home: ``ALPHALINE_HOME``.
        variant: the Feast config (``local``: SQLite online store).
        online_cache_seconds: how long a snapshot of an online store without a watchable file lives.
    """

    def __init__(self, home: Path, *, variant: Literal["local", "prod"] = "local", online_cache_seconds: float = 1.0) -> None:
        self.offline = offline_dir(home)
        self.store = open_store(home, variant)
        views = {v.name: v for v in self.store.list_feature_views()}
        missing = [view_name(f) for f in FAMILIES if view_name(f) not in views]
        if missing:
            raise FeatureStoreError(f"feature store under {home / 'feast'}: views {', '.join(missing)} are not registered "
                                    "(run the ingest job, e.g. `alphaline demo`)")
        self.ttl: dt.timedelta = views[view_name(FAMILIES[0])].ttl
        self.bar: dt.timedelta = self.ttl / TTL_BARS
        online = self.store.config.online_store
        self._online_files = [Path(online.path), Path(f"{online.path}-wal")] if getattr(online, "type", "") == "sqlite" else []
        self._cache_seconds = online_cache_seconds
        self._lock = threading.Lock()
        self._universe: tuple[Any, frozenset[str]] | None = None
        self._snapshot: Snapshot | None = None
        self._offline_frame: tuple[Any, pl.DataFrame] | None = None

    # ---- universe ------------------------------------------------------------------------------
    def universe(self) -> frozenset[str]:
        """Symbols with features in the offline store (re-read when the spine file changes)."""
        sig = _signature([spine_path(self.offline)])
        cached = self._universe
        if cached is not None and cached[0] == sig:
            return cached[1]
        if not spine_path(self.offline).exists():
            raise FeatureStoreError(f"{spine_path(self.offline)}: no features written yet (run the ingest job)")
        symbols = frozenset(pl.scan_parquet(spine_path(self.offline)).select("symbol").unique().collect()["symbol"].to_list())
        self._universe = (sig, symbols)
        return symbols

    # ---- online --------------------------------------------------------------------------------
    def online(self) -> Snapshot:
        """The current snapshot, re-read from Feast when the online store (or the universe) changed."""
        sig = self._online_signature()
        snap = self._snapshot
        if snap is not None and self._fresh(snap, sig):
            return snap
        with self._lock:  # one thread re-reads; the others wait for its snapshot
            snap = self._snapshot
            if snap is not None and self._fresh(snap, sig):
                return snap
            self._snapshot = snap = self._read_online(sig)
            return snap

    def current(self) -> Snapshot | None:
        """The snapshot if it is still the online store's state (a few ``stat`` calls, no read), else None."""
        snap = self._snapshot
        return snap if snap is not None and self._fresh(snap, self._online_signature()) else None

    def _online_signature(self) -> Any:
        return (_signature(self._online_files), _signature([spine_path(self.offline)])) if self._online_files else None

    def _fresh(self, snap: Snapshot, sig: Any) -> bool:
        if sig is not None:
            return snap.signature == sig
        return time.monotonic() - snap.taken < self._cache_seconds

    def _read_online(self, sig: Any) -> Snapshot:
        symbols = sorted(self.universe())
        raw = online_features(self.store, symbols)
        missing_view = pl.any_horizontal(pl.col(c).is_null() for c in TS_COLUMNS)
        frame = raw.with_columns(
            feature_ts=pl.when(missing_view).then(None).otherwise(pl.min_horizontal(TS_COLUMNS)),
        ).select("symbol", *FEATURE_NAMES, "feature_ts")
        return Snapshot(frame=frame, index={s: i for i, s in enumerate(frame["symbol"].to_list())},
                        stamps=frame["feature_ts"].to_list(), newest=frame["feature_ts"].max(), signature=sig,
                        taken=time.monotonic())

    # ---- offline -------------------------------------------------------------------------------
    def offline_frame(self) -> pl.DataFrame:
        """Every offline feature row, sorted by symbol then time (re-read when a file changes)."""
        files = [spine_path(self.offline), *(offline_path(self.offline, f) for f in FAMILIES)]
        sig = _signature(files)
        cached = self._offline_frame
        if cached is not None and cached[0] == sig:
            return cached[1]
        with self._lock:
            cached = self._offline_frame
            if cached is not None and cached[0] == sig:
                return cached[1]
            frame = read_features(self.offline).drop("warmup").sort(*KEYS, "created")
            self._offline_frame = (sig, frame)
            return frame

    def as_of(self, symbols: Sequence[str], at: dt.datetime) -> pl.DataFrame:
        """Per symbol, the latest offline row knowable at ``at`` (``event_timestamp <= at``), any age.

        Returns ``symbol, event_timestamp`` and every feature; symbols without a row are absent.
        Ties on ``event_timestamp`` go to the latest ``created``, as in Feast.
        """
        frame = self.offline_frame()
        return (frame.filter(pl.col("symbol").is_in(list(symbols)) & (pl.col("event_timestamp") <= at))
                .group_by("symbol", maintain_order=True).last()
                .select(*KEYS, *FEATURE_NAMES))

    def history(self, anchors: pl.DataFrame, rows: int) -> pl.DataFrame:
        """For each anchor (``anchor, symbol, event_timestamp``), its symbol's ``rows`` offline rows before it.

        Returns ``anchor, event_timestamp`` and every feature, oldest first within an anchor.
        """
        frame = self.offline_frame()
        picked = (anchors.select("anchor", "symbol", pl.col("event_timestamp").alias("_until"))
                  .join(frame, on="symbol", how="inner")
                  .filter(pl.col("event_timestamp") < pl.col("_until"))
                  .sort("anchor", "event_timestamp", "created"))
        return picked.group_by("anchor", maintain_order=True).tail(rows).select("anchor", "event_timestamp", *FEATURE_NAMES)

    def snapshot_history(self, snap: Snapshot, symbols: Sequence[str], rows: int) -> dict[str, pl.DataFrame]:
        """History before each symbol's online row, computed once per snapshot for the whole universe."""
        cached = snap.history.get(rows)
        if cached is None:
            known = snap.frame.filter(pl.col("feature_ts").is_not_null())
            anchors = known.select(pl.int_range(pl.len()).alias("anchor"), "symbol", pl.col("feature_ts").alias("event_timestamp"))
            hist = self.history(anchors, rows)
            names = anchors["symbol"].to_list()
            cached = {names[k[0]]: part.drop("anchor") for k, part in hist.group_by("anchor", maintain_order=True)}
            snap.history[rows] = cached
        return {s: cached.get(s, _EMPTY) for s in symbols}


_EMPTY = pl.DataFrame(schema={"event_timestamp": pl.Datetime("us", "UTC"), **{n: pl.Float64 for n in FEATURE_NAMES}})
