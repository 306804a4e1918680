"""The prediction logic behind the HTTP service, as plain Python (no BentoML): what each endpoint answers.

:class:`Predictor` validates a request against the universe and the limits, fetches
features (``serving.features``), scores (``serving.scoring``) and raises
:class:`~serving.errors.RequestRejected` for anything a client can get wrong:

====================================================  ======  =====================
problem                                               status  ``detail[].type``
====================================================  ======  =====================
more symbols/rows than the configured maximum         413     ``too_many``
a symbol twice in ``/predict``                        422     ``duplicate_symbol``
a symbol not in the feature store's universe          422     ``unknown_symbol``
no features for a symbol (online or as of ``as_of``)  422     ``missing_features``
features older than ``stale_bars`` (and not allowed)  422     ``stale_features``
a feature missing / unknown in ``/predict_rows``      422     ``missing_feature`` / ``unknown_feature``
no ``feature_ts`` in a row when the model reads history 422   ``missing_feature_ts``
features the model cannot score (non-finite score)    422     ``unscorable``
====================================================  ======  =====================

**Stale features.** A symbol's ``feature_ts`` is the oldest of its feature views'
timestamps; its age is measured against ``as_of`` when given, otherwise against the
newest ``feature_ts`` in the online store (``stale_clock=data``: a symbol lagging its
universe, e.g. a halted feed) or the current time (``stale_clock=wall``: also a stalled
pipeline; only meaningful while the market is open). Older than ``stale_bars`` bars (as of
``as_of``: also older than the views' TTL, which Feast would return as missing) means
stale. DESIGN.md §3.4 says stale features are refused: the default answer is HTTP 422
naming every stale symbol with its age. ``allow_stale: true`` answers instead with
``stale: true``, ``direction: "flat"``, ``confidence: 0`` and the score of the last known
features, so that a trader can hold those positions and still trade the rest.

Example (after ``alphaline demo``)::

    predictor = Predictor.from_settings(ServingSettings())
    predictor.predict(PredictRequest(symbols=["AAA"])).predictions[0].direction
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from feature_repo.definitions import TTL_BARS
from models.data import matrix
from serving.config import ServingSettings
from serving.errors import NoProductionModel, Problem, RequestRejected
from serving.features import FeatureSource, Snapshot, read_only
from serving.schemas import Explanation, Member, ModelCard, Prediction, PredictRequest, PredictResponse, PredictRowsRequest
from serving.scoring import LoadedModel, confidence, directions, explain, load_model, score


class Predictor:
    """Answers ``/predict``, ``/predict_rows`` and ``/model`` for one loaded model; :meth:`swap` replaces it."""

    def __init__(self, settings: ServingSettings, source: FeatureSource, registry: Any, model: LoadedModel) -> None:
        self.settings = settings
        self.source = source
        self.registry = registry
        self.model = model
        self.stale_bars = settings.stale_bars or TTL_BARS
        self._swap_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: ServingSettings, registry: Any, tag: str | None = None) -> Predictor:
        source = FeatureSource(settings.home, variant=settings.feast_config, online_cache_seconds=settings.online_cache_seconds)
        return cls(settings, source, registry, load_model(registry, tag))

    def warm_up(self) -> None:
        """Read the online snapshot and score its universe now rather than on the first request."""
        self._universe_scores(self.model, self.source.online())

    # ---- /predict ------------------------------------------------------------------------------
    def predict(self, request: PredictRequest) -> PredictResponse:
        model = self.model  # one model for the whole request, whatever a concurrent reload does
        self._check_symbols(request.symbols)
        if request.as_of is None:
            return self._predict_online(model, request, self.source.online())
        symbols, at = request.symbols, request.as_of.astimezone(dt.UTC)
        x, stamps, histories = self._as_of(model, symbols, at)
        stale = self._stale_flags(symbols, stamps, at, as_of=True, allow=request.allow_stale)
        scores = self._score(model, x, histories, ("symbols",))
        why = explain(model, x, histories, top=request.explain) if request.explain else None
        return self._answer(model, symbols, scores, stamps, stale, why)

    def quick(self, request: PredictRequest) -> PredictResponse | None:
        """:meth:`predict`'s answer when it is a lookup, else None (then call :meth:`predict`, off the event loop).

        A lookup: online features, no explanation, a model without history, and a snapshot that is
        still current and already scored for this model. Nothing here reads a store or runs a model,
        so an async caller can answer in place instead of handing the request to a thread.
        """
        model = self.model
        if request.as_of is not None or request.explain or model.context:
            return None
        snap = self.source.current()
        if snap is None or not snap.has(_scores_key(model)):
            return None
        self._check_symbols(request.symbols)
        return self._predict_online(model, request, snap)

    def _predict_online(self, model: LoadedModel, request: PredictRequest, snap: Snapshot) -> PredictResponse:
        symbols = request.symbols
        positions = [snap.index.get(s) for s in symbols]
        self._raise([Problem(("symbols", i), f"no online features for {s} (materialize the online store)", "missing_features")
                     for i, (s, p) in enumerate(zip(symbols, positions, strict=True)) if p is None])
        stamps = [snap.stamps[p] for p in positions]
        self._missing(symbols, stamps)
        reference = snap.newest if self.settings.stale_clock == "data" else dt.datetime.now(dt.UTC)
        stale = self._stale_flags(symbols, stamps, reference, as_of=False, allow=request.allow_stale)
        x = snap.matrix(model.features)[positions]
        histories = None
        if model.context:
            by_symbol = self.source.snapshot_history(snap, symbols, model.context)
            histories = [matrix(by_symbol[s], model.features) for s in symbols]
            scores = self._score(model, x, histories, ("symbols",))
        else:  # a row's score depends on its features only: score the universe once per snapshot, pick rows
            scores = self._finite(self._universe_scores(model, snap)[positions], ("symbols",))
            if not request.explain:
                live, flat = self._universe_answers(model, snap)
                return PredictResponse.model_construct(model_version=model.tag, predictions=[
                    flat[p] if st else live[p] for p, st in zip(positions, stale, strict=True)])
        why = explain(model, x, histories, top=request.explain) if request.explain else None
        return self._answer(model, symbols, scores, stamps, stale, why)

    def _universe_answers(self, model: LoadedModel, snap: Snapshot) -> tuple[list[Prediction], list[Prediction]]:
        """Every row's prediction as answered fresh and as answered stale (flat), built once per snapshot and model."""

        def build() -> tuple[list[Prediction], list[Prediction]]:
            scores = self._universe_scores(model, snap)
            assert scores is not None
            with np.errstate(all="ignore"):
                conf = confidence(model.oof_abs, scores)
                dirs = directions(scores, conf, dead_band=self.settings.dead_band)
            rows = list(zip(snap.frame["symbol"].to_list(), scores.tolist(), dirs, conf.tolist(), snap.stamps, strict=True))
            # model_construct: these values are ours and already typed; validating 2 × universe models per snapshot is waste.
            live = [Prediction.model_construct(symbol=s, score=sc, direction=d, confidence=c, feature_ts=ts, stale=False,
                                               explanation=None) for s, sc, d, c, ts in rows]
            flat = [Prediction.model_construct(symbol=s, score=sc, direction="flat", confidence=0.0, feature_ts=ts, stale=True,
                                               explanation=None) for s, sc, _, _, ts in rows]
            return live, flat

        return snap.memo(("answers", model.tag), build)

    @staticmethod
    def _universe_scores(model: LoadedModel, snap: Snapshot) -> np.ndarray | None:
        """Scores of every row of the snapshot (None for a model that reads history: those are scored per request)."""
        if model.context:
            return None

        def build() -> np.ndarray:
            with np.errstate(all="ignore"):
                return read_only(score(model, snap.matrix(model.features)))

        return snap.memo(_scores_key(model), build)

    def _as_of(self, model: LoadedModel, symbols: Sequence[str], at: dt.datetime) -> tuple[np.ndarray, list, list | None]:
        found = self.source.as_of(symbols, at)
        order = pl.DataFrame({"symbol": list(symbols)})
        rows = order.join(found, on="symbol", how="left", maintain_order="left")
        stamps = rows["event_timestamp"].to_list()
        self._missing(symbols, stamps, at=at)
        histories = None
        if model.context:
            anchors = rows.select(pl.int_range(pl.len()).alias("anchor"), "symbol", "event_timestamp")
            histories = self._histories(anchors, model)
        return matrix(rows, model.features), stamps, histories

    def _histories(self, anchors: pl.DataFrame, model: LoadedModel) -> list[np.ndarray]:
        hist = self.source.history(anchors, model.context)
        parts = {k[0]: part for k, part in hist.group_by("anchor", maintain_order=True)}
        width = len(model.features)
        return [matrix(parts[i], model.features) if i in parts else np.empty((0, width)) for i in range(anchors.height)]

    # ---- /predict_rows -------------------------------------------------------------------------
    def predict_rows(self, request: PredictRowsRequest) -> PredictResponse:
        model = self.model
        rows = request.rows
        if len(rows) > self.settings.max_rows:
            raise RequestRejected.one(413, ("rows",), f"{len(rows)} rows, at most {self.settings.max_rows} per request "
                                                      "(ALPHALINE_SERVING_MAX_ROWS)", "too_many")
        universe = self.source.universe()
        problems = [Problem(("rows", i, "symbol"), f"unknown symbol {r.symbol!r} (not in the feature store's universe)",
                            "unknown_symbol") for i, r in enumerate(rows) if r.symbol not in universe]
        wanted = set(model.features)
        for i, r in enumerate(rows):
            missing = [n for n in model.features if n not in r.features]
            if missing:
                problems.append(Problem(("rows", i, "features"), f"missing {len(missing)} feature(s): {', '.join(missing[:5])}"
                                        + (" ..." if len(missing) > 5 else ""), "missing_feature"))
            problems += [Problem(("rows", i, "features", n), f"unknown feature {n!r} (see GET /model for the list)",
                                 "unknown_feature") for n in r.features if n not in wanted][:5]
            if model.context and r.feature_ts is None:
                problems.append(Problem(("rows", i, "feature_ts"), f"required: model {model.tag} reads {model.context} "
                                        "rows of history before it", "missing_feature_ts"))
        self._raise(problems)
        x = np.array([[r.features[n] for n in model.features] for r in rows], dtype=np.float64)
        stamps = [r.feature_ts.astimezone(dt.UTC) if r.feature_ts else None for r in rows]
        histories = None
        if model.context:
            anchors = pl.DataFrame({"anchor": range(len(rows)), "symbol": [r.symbol for r in rows], "event_timestamp": stamps},
                                   schema={"anchor": pl.Int64, "symbol": pl.String, "event_timestamp": pl.Datetime("us", "UTC")})
            histories = self._histories(anchors, model)
        scores = self._score(model, x, histories, ("rows",))
        # Caller-supplied features: their age is the caller's business, so nothing is stale here.
        return self._answer(model, [r.symbol for r in rows], scores, stamps, [False] * len(rows))

    # ---- /model --------------------------------------------------------------------------------
    def card(self) -> ModelCard:
        model = self.model
        meta = model.info["metadata"]
        e = model.ensemble
        members = [Member(family=f, tag=str(meta.get("members", {}).get(f, "")), weight=float(e.weights.get(f, 0.0)),
                          scale=float(e.scales.get(f, 1.0))) for f in e.members]
        return ModelCard(
            model_version=model.tag, stage=model.info["labels"].get("stage"), created=model.info.get("created"),
            label=meta.get("label"), features=model.features, context=model.context, members=members,
            training_window=meta.get("training_window"), oos_window=meta.get("oos_window"),
            oos_metrics=meta.get("oos_metrics"), gates=meta.get("gates"), gates_passed=meta.get("gates_passed"),
            data_fingerprint=meta.get("data_fingerprint"), code_version=meta.get("code_version"),
            serving={"stale_bars": self.stale_bars, "stale_clock": self.settings.stale_clock,
                     "bar_seconds": self.source.bar.total_seconds(), "ttl_seconds": self.source.ttl.total_seconds(),
                     "dead_band": self.settings.dead_band, "max_symbols": self.settings.max_symbols,
                     "max_rows": self.settings.max_rows, "confidence": "share of OOF |ensemble scores| <= |score|"},
        )

    # ---- reload --------------------------------------------------------------------------------
    def swap(self) -> tuple[LoadedModel, LoadedModel]:
        """Load the store's current production ensemble and make it the one that scores; returns (old, new).

        Raises:
            NoProductionModel: the store has no production ensemble (the current model keeps serving).

        The new model is fully loaded before one reference assignment replaces the old one,
        so every request is scored by exactly one model.
        """
        with self._swap_lock:
            old = self.model
            tag = self.registry.production()
            if tag is None:
                raise NoProductionModel(f"no production ensemble in the model store; still serving {old.tag}")
            if tag == old.tag:
                return old, old
            new = load_model(self.registry, tag)
            self.model = new
            return old, new

    # ---- shared --------------------------------------------------------------------------------
    def _check_symbols(self, symbols: Sequence[str]) -> None:
        if len(symbols) > self.settings.max_symbols:
            raise RequestRejected.one(413, ("symbols",), f"{len(symbols)} symbols, at most {self.settings.max_symbols} "
                                                         "per request (ALPHALINE_SERVING_MAX_SYMBOLS)", "too_many")
        counts = Counter(symbols)
        first = {s: i for i, s in reversed(list(enumerate(symbols)))}
        problems = [Problem(("symbols", i), f"{s} appears {counts[s]} times; ask once", "duplicate_symbol")
                    for s, i in first.items() if counts[s] > 1]
        universe = self.source.universe()
        problems += [Problem(("symbols", i), f"unknown symbol {s!r} (not in the feature store's universe)", "unknown_symbol")
                     for i, s in enumerate(symbols) if s not in universe]
        self._raise(problems)

    def _missing(self, symbols: Sequence[str], stamps: list[dt.datetime | None], *, at: dt.datetime | None = None) -> None:
        where = f"at or before as_of {at.isoformat()}" if at else "in the online store for every feature view"
        self._raise([Problem(("symbols", i), f"no features for {s} {where}", "missing_features")
                     for i, (s, ts) in enumerate(zip(symbols, stamps, strict=True)) if ts is None])

    def _stale_flags(self, symbols: Sequence[str], stamps: list[dt.datetime], reference: dt.datetime | None, *,
                     as_of: bool, allow: bool) -> list[bool]:
        limit = self.stale_bars * self.source.bar
        if as_of:
            limit = min(limit, self.source.ttl)  # Feast returns nothing older than the TTL as of a moment
        flags = [reference is not None and reference - ts > limit for ts in stamps]
        if not allow:
            bars = self.source.bar
            self._raise([Problem(("symbols", i), f"stale features for {s}: from {ts.isoformat()}, {(reference - ts) / bars:.1f} "
                                 f"bars before {reference.isoformat()} (limit {limit / bars:g} bars; allow_stale=true "
                                 "answers them flagged and flat)", "stale_features")
                         for i, (s, ts, f) in enumerate(zip(symbols, stamps, flags, strict=True)) if f])
        return flags

    def _score(self, model: LoadedModel, x: np.ndarray, histories: list | None, loc: tuple[str, ...]) -> np.ndarray:
        with np.errstate(all="ignore"):
            scores = score(model, x, histories)
        return self._finite(scores, loc)

    def _finite(self, scores: np.ndarray, loc: tuple[str, ...]) -> np.ndarray:
        bad = np.flatnonzero(~np.isfinite(scores))
        self._raise([Problem((*loc, int(i)), "features the model cannot score (non-finite score)", "unscorable") for i in bad])
        return scores

    def _answer(self, model: LoadedModel, symbols: Sequence[str], scores: np.ndarray, stamps: list, stale: list[bool],
                why: list[Explanation] | None = None) -> PredictResponse:
        conf = confidence(model.oof_abs, scores)
        dirs = directions(scores, conf, dead_band=self.settings.dead_band)
        why = why or [None] * len(symbols)
        return PredictResponse(model_version=model.tag, predictions=[
            Prediction(symbol=s, score=float(sc), direction="flat" if st else d, confidence=0.0 if st else float(c),
                       feature_ts=ts, stale=st, explanation=w)
            for s, sc, d, c, ts, st, w in zip(symbols, scores, dirs, conf, stamps, stale, why, strict=True)])

    @staticmethod
    def _raise(problems: list[Problem]) -> None:
        if problems:
            raise RequestRejected(422, problems)


def _scores_key(model: LoadedModel) -> tuple[str, str]:
    return ("scores", model.tag)
