"""The loaded production model and how a score becomes a direction and a confidence.

* **score**: the ensemble's stacked score ``Σ w_f · pred_f / scale_f`` (``models.ensemble``).
* **confidence**: the share of the ensemble's out-of-fold scores (``oof.parquet`` in its
  model entry, ``pred_ensemble``) whose magnitude is at most this score's, in [0, 1]. It is
  scale-free and calibrated on data the model never trained on; 0.9 means "stronger
  than 90% of what the model said out of sample".
* **direction**: the score's sign, ``flat`` inside the dead band ``confidence < dead_band``
  (default 0.2: the weakest fifth of out-of-sample scores carry no direction).
* **sequence members** (``context > 0``): each scored row is preceded by its own history
  rows, in time order, under one group code per scored row; only the scored rows'
  outputs are kept.

Example:
    >>> import numpy as np
    >>> oof_abs = np.array([0.1, 0.2, 0.3, 0.4])
    >>> confidence(oof_abs, np.array([0.25, -0.5, 0.0])).tolist()
    [0.5, 1.0, 0.0]
    >>> directions(np.array([0.25, -0.5, 0.05]), np.array([0.5, 1.0, 0.1]), dead_band=0.2)
    ['long', 'short', 'flat']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from feature_repo import FEATURE_NAMES
from feature_repo.library import FEATURES
from models.ensemble import Ensemble
from models.explain import explain as attribute
from serving.errors import NoProductionModel, ServingError
from serving.schemas import Explanation


@dataclass(frozen=True)
class LoadedModel:
    """One production ensemble, ready to score: what a reload swaps as a whole."""

    tag: str
    ensemble: Ensemble
    features: list[str]
    oof_abs: np.ndarray  # sorted |OOF ensemble scores|
    info: dict[str, Any]

    @property
    def context(self) -> int:
        return self.ensemble.context


def load_model(registry: Any, tag: str | None = None) -> LoadedModel:
    """Load ``tag`` (default: the registry's production ensemble) with its OOF scores.

    Raises:
        NoProductionModel: no tag given and no production ensemble in the store.
        ServingError: the model needs features the feature store does not have, or has no OOF scores.
    """
    tag = tag or registry.production()
    if tag is None:
        raise NoProductionModel(f"no production ensemble in the model store {registry.store._path} "
                                "(train and promote one: `alphaline demo`; serve with BENTOML_HOME=$ALPHALINE_HOME/bentoml)")
    info = registry.info(tag)
    ensemble = registry.load_ensemble(tag)
    features = list(ensemble.feature_names or info["metadata"].get("features") or [])
    unknown = [f for f in features if f not in FEATURE_NAMES]
    if not features or unknown:
        raise ServingError(f"model {tag}: features {', '.join(unknown[:5]) or '(none listed)'} are not in the feature store")
    scores = registry.oof(tag)["pred_ensemble"].cast(float).drop_nulls().drop_nans().to_numpy()
    if scores.size == 0:
        raise ServingError(f"model {tag}: oof.parquet holds no ensemble scores to calibrate confidence with")
    return LoadedModel(tag=str(tag), ensemble=ensemble, features=features, oof_abs=np.sort(np.abs(scores)), info=info)


def confidence(oof_abs: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Share of the sorted OOF magnitudes ``oof_abs`` at or below each ``|score|``."""
    return np.searchsorted(oof_abs, np.abs(scores), side="right") / len(oof_abs)


def directions(scores: np.ndarray, conf: np.ndarray, *, dead_band: float) -> list[str]:
    out = np.where(scores > 0, "long", "short")
    return np.where((conf < dead_band) | (scores == 0), "flat", out).tolist()


def score(model: LoadedModel, x: np.ndarray, histories: list[np.ndarray] | None = None) -> np.ndarray:
    """Ensemble scores of the rows of ``x``; ``histories[i]`` (rows × features, oldest first) precede row ``i``."""
    if model.context == 0 or histories is None:
        return model.ensemble.predict(x)
    stacked, groups, targets = _with_history(model, x, histories)
    return model.ensemble.predict(stacked, groups=groups)[targets]


def explain(model: LoadedModel, x: np.ndarray, histories: list[np.ndarray] | None = None, *, top: int) -> list[Explanation]:
    """The ``top`` SHAP contributions to each row's score (``models.explain``), the rest summed in ``other``."""
    if model.context == 0 or histories is None:
        att = attribute(model.ensemble, x)
    else:
        stacked, groups, targets = _with_history(model, x, histories)
        att = attribute(model.ensemble, stacked, groups=groups, rows=targets)
    out = []
    for i in range(len(x)):
        shown = dict(att.top(i, top))
        out.append(Explanation(base=float(att.base[i]), contributions=shown,
                               other=float(att.values[i].sum() - sum(shown.values())), families=att.by_group(i, _family)))
    return out


def _family(feature: str) -> str:
    spec = FEATURES.get(feature)
    return spec.family if spec is not None else feature.split("_", 1)[0]


def _with_history(model: LoadedModel, x: np.ndarray, histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row preceded by its history under one group code per row, and where the rows landed."""
    blocks, groups, targets = [], [], []
    at = 0
    for i, past in enumerate(histories):
        past = past[-model.context:] if len(past) else past.reshape(0, x.shape[1])
        blocks += [past, x[i:i + 1]]
        groups.append(np.full(len(past) + 1, i, dtype=np.int64))
        at += len(past)
        targets.append(at)
        at += 1
    return np.vstack(blocks), np.concatenate(groups), np.asarray(targets)
