"""Learners behind one small interface: ``fit``, ``predict``, ``save``, ``load``, ``feature_importance``.

Every learner takes a float matrix of features (NaN where a value is missing) and a
label vector, is seeded, and early-stops on an inner validation slice taken from the
*end* of its training window (never a random slice: that would look ahead).

Rows are ordered by time ascending (ties in any order). ``groups`` gives one integer
symbol code per row; learners that read a symbol's recent history (``torch_tcn``) need
it, the others ignore it. ``LEARNERS`` maps each family name to its class; the torch
learners live in :mod:`models.torch_learners` and load torch only when fitted.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 3)); y = x[:, 0] * 0.1 + rng.normal(size=500) * 0.01
    >>> model = RidgeLearner().fit(x, y, feature_names=["a", "b", "c"])
    >>> max(model.feature_importance(), key=model.feature_importance().get)
    'a'
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

SEED = 7
VALIDATION_SHARE = 0.15
#: Boosted trees keep at least this many: one tree is a constant on most rows, which ranks nothing.
MIN_TREES = 20


class Learner(Protocol):
    family: str

    def fit(self, x: np.ndarray, y: np.ndarray, *, feature_names: list[str], groups: np.ndarray | None = None) -> Learner: ...
    def predict(self, x: np.ndarray, *, groups: np.ndarray | None = None) -> np.ndarray: ...
    def save(self, path: Path) -> None: ...
    def feature_importance(self) -> dict[str, float]: ...


def split_tail(n: int, share: float = VALIDATION_SHARE) -> tuple[slice, slice]:
    """Train and validation slices of ``n`` time-ordered rows: validation is the last ``share``."""
    cut = max(1, int(n * (1 - share)))
    return slice(0, cut), slice(cut, n)


@dataclass
class _Base:
    family: ClassVar[str] = "base"
    params: dict[str, Any] = field(default_factory=dict)
    feature_names: list[str] = field(default_factory=list)
    model: Any = None

    def save(self, path: Path) -> None:
        path.write_bytes(pickle.dumps(self))

    @staticmethod
    def load(path: Path) -> _Base:
        return pickle.loads(path.read_bytes())

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.feature_names and x.shape[1] != len(self.feature_names):
            raise ValueError(f"features: expected {len(self.feature_names)} columns, got {x.shape[1]}")
        return x


@dataclass
class RidgeLearner(_Base):
    """Standardised ridge regression (scikit-learn); missing values imputed by the training median."""

    family: ClassVar[str] = "sklearn_ridge"

    def fit(self, x: np.ndarray, y: np.ndarray, *, feature_names: list[str], groups: np.ndarray | None = None) -> RidgeLearner:
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.feature_names = list(feature_names)
        self.model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), Ridge(alpha=self.params.get("alpha", 10.0)))
        self.model.fit(self._check(x), y)
        return self

    def predict(self, x: np.ndarray, *, groups: np.ndarray | None = None) -> np.ndarray:
        return self.model.predict(self._check(x))

    def feature_importance(self) -> dict[str, float]:
        coef = np.abs(self.model[-1].coef_)
        return dict(zip(self.feature_names, (coef / coef.sum()).tolist(), strict=True))


@dataclass
class HistGBLearner(_Base):
    """scikit-learn HistGradientBoosting (native NaN handling), early-stopped on the last 15% of the window."""

    family: ClassVar[str] = "sklearn_hgb"

    def fit(self, x: np.ndarray, y: np.ndarray, *, feature_names: list[str], groups: np.ndarray | None = None) -> HistGBLearner:
        from sklearn.ensemble import HistGradientBoostingRegressor

        self.feature_names = list(feature_names)
        x = self._check(x)
        train, valid = split_tail(len(y))
        probe = HistGradientBoostingRegressor(
            max_iter=self.params.get("max_iter", 300), learning_rate=self.params.get("learning_rate", 0.05),
            max_leaf_nodes=self.params.get("max_leaf_nodes", 15), l2_regularization=1.0, random_state=SEED, early_stopping=False,
        )
        probe.fit(x[train], y[train])
        # The tail slice's correlation with each stage's predictions (what IC rewards, not MSE) picks the
        # number of trees, never fewer than MIN_TREES; the final model refits on everything.
        scores = [_corr(p, y[valid]) for p in probe.staged_predict(x[valid])]
        best = max(MIN_TREES, int(np.nanargmax(scores)) + 1 if np.isfinite(scores).any() else MIN_TREES)
        self.model = probe.set_params(max_iter=best).fit(x, y)
        self.params["best_iteration"] = best
        return self

    def predict(self, x: np.ndarray, *, groups: np.ndarray | None = None) -> np.ndarray:
        return self.model.predict(self._check(x))

    def feature_importance(self) -> dict[str, float]:
        return _split_counts(self.feature_names, self.model)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _split_counts(names: list[str], model: Any) -> dict[str, float]:
    counts = np.zeros(len(names))
    for predictors in model._predictors:  # one tree per iteration (regression)
        for tree in predictors:
            nodes = tree.nodes[tree.nodes["is_leaf"] == 0]
            np.add.at(counts, nodes["feature_idx"], 1)
    total = counts.sum() or 1.0
    return dict(zip(names, (counts / total).tolist(), strict=True))


@dataclass
class XGBLearner(_Base):
    """XGBoost ``hist`` trees, early stopping on the last 15% of the training window."""

    family: ClassVar[str] = "xgboost"

    def fit(self, x: np.ndarray, y: np.ndarray, *, feature_names: list[str], groups: np.ndarray | None = None) -> XGBLearner:
        import xgboost as xgb

        self.feature_names = list(feature_names)
        x = self._check(x)
        train, valid = split_tail(len(y))
        self.model = xgb.XGBRegressor(
            tree_method="hist", n_estimators=self.params.get("n_estimators", 400), learning_rate=self.params.get("learning_rate", 0.05),
            max_depth=self.params.get("max_depth", 4), subsample=0.8, colsample_bytree=0.8, min_child_weight=50,
            reg_lambda=1.0, random_state=SEED, n_jobs=2, early_stopping_rounds=30,
        )
        self.model.fit(x[train], y[train], eval_set=[(x[valid], y[valid])], verbose=False)
        self.params["best_iteration"] = max(int(self.model.best_iteration), MIN_TREES - 1)
        return self

    def predict(self, x: np.ndarray, *, groups: np.ndarray | None = None) -> np.ndarray:
        last = self.params.get("best_iteration", self.model.best_iteration)
        return self.model.predict(self._check(x), iteration_range=(0, int(last) + 1))

    def feature_importance(self) -> dict[str, float]:
        gain = self.model.get_booster().get_score(importance_type="gain")
        total = sum(gain.values()) or 1.0
        return {name: gain.get(f"f{i}", 0.0) / total for i, name in enumerate(self.feature_names)}


@dataclass
class LGBMLearner(_Base):
    """LightGBM gradient boosting (Qlib's reference learner), early stopping on the last 15% of the window."""

    family: ClassVar[str] = "lightgbm"

    def fit(self, x: np.ndarray, y: np.ndarray, *, feature_names: list[str], groups: np.ndarray | None = None) -> LGBMLearner:
        import lightgbm as lgb

        self.feature_names = list(feature_names)
        x = self._check(x)
        train, valid = split_tail(len(y))
        self.model = lgb.LGBMRegressor(
            n_estimators=self.params.get("n_estimators", 400), learning_rate=self.params.get("learning_rate", 0.05),
            num_leaves=self.params.get("num_leaves", 15), min_child_samples=self.params.get("min_child_samples", 100),
            subsample=0.8, subsample_freq=1, colsample_bytree=0.8, reg_lambda=1.0, random_state=SEED, n_jobs=2,
            deterministic=True, force_row_wise=True, verbose=-1,
        )
        self.model.fit(x[train], y[train], eval_X=(x[valid],), eval_y=(y[valid],), callbacks=[lgb.early_stopping(30, verbose=False)])
        self.params["best_iteration"] = max(int(self.model.best_iteration_ or 0), MIN_TREES)
        return self

    def predict(self, x: np.ndarray, *, groups: np.ndarray | None = None) -> np.ndarray:
        return self.model.predict(self._check(x), num_iteration=int(self.params["best_iteration"]))

    def feature_importance(self) -> dict[str, float]:
        gain = self.model.booster_.feature_importance(importance_type="gain")
        total = float(gain.sum()) or 1.0
        return dict(zip(self.feature_names, (gain / total).tolist(), strict=True))


LEARNERS: dict[str, type[_Base]]  # family → class; built on first access by ``__getattr__`` below


def _registry() -> dict[str, type[_Base]]:
    from models.torch_learners import MLPLearner, TCNLearner

    return {cls.family: cls for cls in (RidgeLearner, HistGBLearner, XGBLearner, LGBMLearner, MLPLearner, TCNLearner)}


def __getattr__(name: str) -> Any:
    # The torch learners subclass ``_Base``, so their module imports this one; importing theirs while
    # this one loads would break whenever ``models.torch_learners`` is the module imported first.
    if name == "LEARNERS":
        globals()["LEARNERS"] = registry = _registry()
        return registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
