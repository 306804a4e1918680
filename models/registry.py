"""The model registry: BentoML's model store under ``$ALPHALINE_HOME/bentoml``, with stages.

Every trained learner is a store entry ``alphaline_<family>:<version>`` and every
ensemble an entry ``alphaline_ensemble:<version>`` that names its members by tag
(DESIGN.md §3.3). Labels: ``stage`` (``candidate`` | ``production`` | ``archived``),
``family`` and ``role`` (``member`` | ``ensemble``). Metadata: ordered feature list,
label, training window, data fingerprint, per-fold CV metrics, gate results, code
version. Each entry's files are the learner's own ``save`` output (``model.bin``); an
ensemble also keeps its weights (``ensemble.json``) and its out-of-fold predictions
(``oof.parquet``), which champion/challenger comparisons read.

**Promotion** (:meth:`Registry.promote`): refused unless every gate passed; if a
production ensemble exists, the candidate must beat it — a higher IC on the rows
*both* scored out of sample (the intersection of their OOF windows). The old champion
becomes ``archived`` and the promotion is appended to ``production_history.jsonl``,
so :meth:`Registry.rollback` restores the previous production ensemble in one step.
Stages are labels in each entry's ``model.yaml``; promotion rewrites only that label.

Example:
    >>> import tempfile, numpy as np
    >>> from models.learners import RidgeLearner
    >>> reg = Registry(Path(tempfile.mkdtemp()))
    >>> x = np.random.default_rng(0).normal(size=(50, 2)); y = x[:, 0]
    >>> tag = reg.save_member(RidgeLearner().fit(x, y, feature_names=["a", "b"]), metadata={"label": "y"})
    >>> str(tag).startswith("alphaline_sklearn_ridge:"), reg.info(tag)["labels"]["stage"]
    (True, 'candidate')
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from models.ensemble import Ensemble
from models.explain import Background
from models.learners import LEARNERS
from models.metrics import ic_summary

ENSEMBLE = "alphaline_ensemble"
MEMBER_FILE = "model.bin"
BACKGROUND_FILE = "background.npz"
STAGES = ("candidate", "production", "archived")


class RegistryError(Exception):
    """A registry request that cannot be done (unknown tag, nothing to roll back to, ...)."""


class PromotionRefused(RegistryError):
    """The candidate may not become production (a gate failed, or it does not beat the champion)."""


@dataclass(frozen=True)
class Comparison:
    challenger_ic: float
    champion_ic: float
    timestamps: int

    @property
    def challenger_wins(self) -> bool:
        return self.challenger_ic > self.champion_ic


def _plain(value: Any) -> Any:
    """Metadata BentoML (and YAML) can store: None, NaN and inf become strings, tuples lists, numpy scalars Python ones."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return str(value).lower()
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


class Registry:
    """Registry over the BentoML model store rooted at ``home/bentoml/models``."""

    def __init__(self, home: Path) -> None:
        from bentoml._internal.models.model import ModelStore

        self.root = Path(home) / "bentoml"
        (self.root / "models").mkdir(parents=True, exist_ok=True)
        self.store = ModelStore(str(self.root / "models"))
        self.history_path = self.root / "production_history.jsonl"

    @classmethod
    def from_store(cls, store: Any) -> Registry:
        """A registry over an existing BentoML ``ModelStore`` (e.g. BentoML's global one inside ``bentoml serve``).

        A served Bento keeps its models in its own store, not under ``ALPHALINE_HOME``; reading
        (``production``, ``info``, ``load_ensemble``) works the same over it.
        """
        self = cls.__new__(cls)
        self.store = store
        self.root = Path(store._path).parent
        self.history_path = self.root / "production_history.jsonl"
        return self

    # ---- writing -------------------------------------------------------------------------------
    def save_member(self, learner: Any, *, metadata: dict[str, Any], stage: str = "candidate") -> Any:
        import bentoml

        labels = {"stage": stage, "family": learner.family, "role": "member"}
        with bentoml.models.create(f"alphaline_{learner.family}", labels=labels, metadata=_plain(metadata), _model_store=self.store) as entry:
            learner.save(Path(entry.path_of(MEMBER_FILE)))
        return entry.tag

    def save_ensemble(self, ensemble: Ensemble, member_tags: dict[str, Any], *, metadata: dict[str, Any],
                      oof: pl.DataFrame, stage: str = "candidate") -> Any:
        import bentoml

        labels = {"stage": stage, "family": "ensemble", "role": "ensemble"}
        meta = _plain({**metadata, "members": {f: str(t) for f, t in member_tags.items()}, "weights": ensemble.weights})
        with bentoml.models.create(ENSEMBLE, labels=labels, metadata=meta, _model_store=self.store) as entry:
            spec = {"members": {f: str(t) for f, t in member_tags.items()}, "weights": ensemble.weights,
                    "scales": ensemble.scales, "feature_names": ensemble.feature_names}
            Path(entry.path_of("ensemble.json")).write_text(json.dumps(spec, indent=2))
            oof.write_parquet(entry.path_of("oof.parquet"))
            if ensemble.background is not None:  # the explainers' reference rows (models.explain)
                np.savez(entry.path_of(BACKGROUND_FILE), x=ensemble.background.x, groups=ensemble.background.groups)
        return entry.tag

    # ---- reading -------------------------------------------------------------------------------
    def get(self, tag: Any) -> Any:
        from bentoml.exceptions import NotFound

        try:
            return self.store.get(str(tag))
        except NotFound:
            raise RegistryError(f"model {tag}: not in the model store ({self.root / 'models'})") from None

    def info(self, tag: Any) -> dict[str, Any]:
        entry = self.get(tag)
        return {"tag": str(entry.tag), "labels": dict(entry.info.labels), "metadata": dict(entry.info.metadata),
                "created": entry.info.creation_time.isoformat(), "path": entry.path}

    def list(self, *, stage: str | None = None, role: str | None = None) -> list[dict[str, Any]]:
        rows = []
        for entry in self.store.list():
            labels = dict(entry.info.labels)
            if not str(entry.tag.name).startswith("alphaline_"):
                continue
            if (stage and labels.get("stage") != stage) or (role and labels.get("role") != role):
                continue
            rows.append({"tag": str(entry.tag), "labels": labels, "created": entry.info.creation_time})
        return sorted(rows, key=lambda r: r["created"])

    def production(self) -> str | None:
        """Tag of the production ensemble, or None."""
        rows = self.list(stage="production", role="ensemble")
        return rows[-1]["tag"] if rows else None

    def load_member(self, tag: Any) -> Any:
        entry = self.get(tag)
        family = entry.info.labels.get("family")
        if family not in LEARNERS:
            raise RegistryError(f"model {tag}: family {family!r} is not a known learner")
        return LEARNERS[family].load(Path(entry.path_of(MEMBER_FILE)))

    def load_ensemble(self, tag: Any) -> Ensemble:
        entry = self.get(tag)
        spec = json.loads(Path(entry.path_of("ensemble.json")).read_text())
        members = {f: self.load_member(t) for f, t in spec["members"].items()}
        ensemble = Ensemble(members=members, weights=spec["weights"], scales=spec["scales"], feature_names=spec["feature_names"])
        stored = Path(entry.path_of(BACKGROUND_FILE))
        if stored.exists():
            with np.load(stored) as npz:
                ensemble.background = Background(x=npz["x"], groups=npz["groups"])
        return ensemble

    def oof(self, tag: Any) -> pl.DataFrame:
        return pl.read_parquet(self.get(tag).path_of("oof.parquet"))

    # ---- stages --------------------------------------------------------------------------------
    def compare(self, challenger: Any, champion: Any) -> Comparison:
        """Both ensembles' IC on the rows both scored out of sample."""
        a, b = self.oof(challenger), self.oof(champion)
        label = str(self.info(challenger)["metadata"].get("label"))
        common = a.select("symbol", "event_timestamp", label, pl.col("pred_ensemble").alias("challenger")).join(
            b.select("symbol", "event_timestamp", pl.col("pred_ensemble").alias("champion")), on=["symbol", "event_timestamp"])
        one = ic_summary(common, score="challenger", label=label, time="event_timestamp")
        two = ic_summary(common, score="champion", label=label, time="event_timestamp")
        return Comparison(one["ic"], two["ic"], int(one["timestamps"]) if common.height else 0)

    def promote(self, tag: Any, *, min_common_timestamps: int = 100, by: str = "alphaline") -> Comparison | None:
        """Make ``tag`` (an ensemble whose gates all passed) production if it beats the champion."""
        info = self.info(tag)
        if info["labels"].get("role") != "ensemble":
            raise PromotionRefused(f"model {tag}: only an ensemble can be promoted (this is a {info['labels'].get('role')})")
        gates = info["metadata"].get("gates") or []
        failed = [g["name"] for g in gates if not g.get("passed")]
        if not gates or failed:
            raise PromotionRefused(f"model {tag}: gates failed ({', '.join(failed) or 'no gate results'}); it cannot become production")
        champion = self.production()
        if champion == str(info["tag"]):
            raise PromotionRefused(f"model {tag}: already production")
        comparison = None
        if champion is not None:
            comparison = self.compare(tag, champion)
            if comparison.timestamps < min_common_timestamps:
                raise PromotionRefused(
                    f"model {tag}: shares only {comparison.timestamps} out-of-sample timestamps with champion {champion} "
                    f"(need {min_common_timestamps}); retrain on an overlapping window")
            if not comparison.challenger_wins:
                raise PromotionRefused(
                    f"model {tag}: IC {comparison.challenger_ic:.4f} does not beat champion {champion} "
                    f"({comparison.champion_ic:.4f}) on their common out-of-sample window")
            self._set_stage(champion, "archived")
        self._set_stage(tag, "production")
        self._append({"action": "promote", "tag": str(info["tag"]), "previous": champion, "by": by})
        return comparison

    def rollback(self, *, by: str = "alphaline") -> str:
        """Archive the production ensemble and restore the one before it; returns the restored tag."""
        stack = self.production_stack()
        current = self.production()
        if current is None or len(stack) < 2:
            raise RegistryError("rollback: no earlier production model to restore")
        previous = stack[-2]
        self._set_stage(current, "archived")
        self._set_stage(previous, "production")
        self._append({"action": "rollback", "tag": previous, "previous": current, "by": by})
        return previous

    def production_stack(self) -> list[str]:
        """Production tags in order of promotion, with rolled-back ones popped."""
        stack: list[str] = []
        for event in self.history():
            if event["action"] == "promote":
                stack.append(event["tag"])
            elif event["action"] == "rollback" and stack:
                stack.pop()
        return stack

    def history(self) -> list[dict[str, Any]]:
        if not self.history_path.exists():
            return []
        return [json.loads(line) for line in self.history_path.read_text().splitlines() if line.strip()]

    def _append(self, event: dict[str, Any]) -> None:
        event = {"at": dt.datetime.now(dt.UTC).isoformat(), **event}
        with self.history_path.open("a") as fh:
            fh.write(json.dumps(event) + "\n")

    def _set_stage(self, tag: Any, stage: str) -> None:
        """Rewrite the ``stage`` label of an ensemble and its members (``model.yaml``, atomically)."""
        entry = self.get(tag)
        tags = [str(entry.tag)]
        if entry.info.labels.get("role") == "ensemble":
            tags += list(json.loads(Path(entry.path_of("ensemble.json")).read_text())["members"].values())
        for t in tags:
            path = Path(self.get(t).path_of("model.yaml"))
            doc = yaml.safe_load(path.read_text())
            doc.setdefault("labels", {})["stage"] = stage
            tmp = path.with_suffix(".yaml.tmp")
            tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
            tmp.replace(path)
