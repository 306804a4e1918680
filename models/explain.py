"""SHAP attributions of the ensemble's scores: why a symbol scored what it scored.

Every member is explained by the ``shap`` library's exact or model-specific explainer, and
the ensemble's attribution is the same weighted sum as its score (``models.ensemble``):
``φ_ens = Σ w_f · φ_f / scale_f`` and ``base_ens = Σ w_f · base_f / scale_f``, so for every
row ``base + Σ_j φ_j = score`` (to float precision; :func:`explain` checks it).

=====================  =========================================  ============================================
member                 explainer                                  base value
=====================  =========================================  ============================================
``sklearn_ridge``      ``shap.LinearExplainer`` on the imputed,   the intercept (the training mean of the
                       standardised inputs (exact)                standardised inputs is 0)
trees (HistGB,         ``shap.TreeExplainer`` (exact TreeSHAP) on  the mean prediction over the training data
XGBoost, LightGBM)     the trees the model predicts with          the trees saw
``torch_mlp``,         ``shap.DeepExplainer`` (DeepLIFT's          the mean prediction over the background
``torch_tcn``          Shapley approximation, additive) against   sample stored with the ensemble
                       the ensemble's background sample
=====================  =========================================  ============================================

A feature's missing-value indicator (torch members) counts for its feature; for the TCN a
feature's attribution is summed over the bars of its window ("this feature over the last
16 bars"), and the attribution of its real-row channel (how much history a symbol has) is
kept in that row's base value, so the sum stays exact.

The background is a small slice of the end of the training window (:func:`background`):
the last ``context + 1`` rows of up to :data:`BACKGROUND_SYMBOLS` symbols.

Example:
    >>> import numpy as np
    >>> from models.learners import RidgeLearner
    >>> from models.ensemble import Ensemble
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(400, 3)); y = 0.1 * x[:, 0] + rng.normal(size=400) * 0.01
    >>> ens = Ensemble({"sklearn_ridge": RidgeLearner().fit(x, y, feature_names=["a", "b", "c"])},
    ...                {"sklearn_ridge": 1.0}, {"sklearn_ridge": 0.1}, feature_names=["a", "b", "c"])
    >>> att = explain(ens, x[:2])
    >>> np.allclose(att.base + att.values.sum(axis=1), ens.predict(x[:2]))
    True
    >>> att.top(0, 1)
    [('a', ...)]
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Symbols whose latest rows form the background sample (DeepExplainer's reference inputs).
BACKGROUND_SYMBOLS = 32
#: Reference rows a row-wise network is explained against (of the background's rows).
NETWORK_BACKGROUND_ROWS = 128
#: ``base + Σφ`` may differ from the score by this much (relative to the scores' spread) before :func:`explain` refuses.
ADDITIVITY_TOLERANCE = 1e-4


class ExplainError(RuntimeError):
    """An attribution does not add up to the score it explains (a bug, never a client error)."""


@dataclass(frozen=True)
class Attribution:
    """``values[i, j]``: feature ``j``'s contribution to row ``i``; ``base[i] + values[i].sum()`` is the score."""

    values: np.ndarray  # rows × features
    base: np.ndarray  # rows
    features: list[str]

    def top(self, row: int, k: int) -> list[tuple[str, float]]:
        """The ``k`` largest contributions of ``row`` by magnitude, largest first."""
        order = np.argsort(-np.abs(self.values[row]), kind="stable")[:k]
        return [(self.features[j], float(self.values[row, j])) for j in order]

    def by_group(self, row: int, group_of: Callable[[str], str]) -> dict[str, float]:
        """``row``'s contributions summed by group (e.g. feature family), largest magnitude first.

        Collinear features (an EMA and the MACD built from it) can carry large offsetting attributions; their
        family's sum is what they add together.
        """
        totals: dict[str, float] = {}
        for name, value in zip(self.features, self.values[row].tolist(), strict=True):
            totals[group_of(name)] = totals.get(group_of(name), 0.0) + value
        return dict(sorted(totals.items(), key=lambda kv: -abs(kv[1])))

    def importance(self) -> dict[str, float]:
        """Mean |contribution| per feature over the rows, as shares summing to 1 (largest first)."""
        mean = np.abs(self.values).mean(axis=0)
        total = float(mean.sum()) or 1.0
        order = np.argsort(-mean, kind="stable")
        return {self.features[j]: float(mean[j] / total) for j in order}


@dataclass(frozen=True)
class Background:
    """Reference rows for the explainers: ``x`` (rows × features, each symbol's rows in time order) and ``groups``."""

    x: np.ndarray
    groups: np.ndarray

    def sample(self, n: int = NETWORK_BACKGROUND_ROWS) -> np.ndarray:
        """At most ``n`` row indices spread evenly over the sample (DeepExplainer's cost grows with it)."""
        return np.unique(np.linspace(0, len(self.x) - 1, min(n, len(self.x))).round().astype(np.int64))

    def anchors(self) -> np.ndarray:
        """Index of each symbol's last row (the rows a sequence member's reference windows end on)."""
        last = {}
        for i, g in enumerate(self.groups.tolist()):
            last[g] = i
        return np.array(sorted(last.values()), dtype=np.int64)


def importance_table(shares: dict[str, float]) -> str:
    """Markdown: features by their share of the mean |SHAP value|, largest first (what the Dagster UI shows).

    Example:
        >>> print(importance_table({"a": 0.75, "b": 0.25}))
        | feature | share of mean abs(SHAP) |
        |---|---:|
        | a | 75.0% |
        | b | 25.0% |
    """
    return "\n".join(["| feature | share of mean abs(SHAP) |", "|---|---:|",
                      *(f"| {name} | {share:.1%} |" for name, share in shares.items())])


def background(x: np.ndarray, groups: np.ndarray, *, context: int, symbols: int = BACKGROUND_SYMBOLS) -> Background:
    """The last ``context + 1`` rows of up to ``symbols`` symbols from a time-ordered training matrix."""
    keep: list[int] = []
    seen: dict[int, int] = {}
    for i in range(len(groups) - 1, -1, -1):  # newest first
        g = int(groups[i])
        if g not in seen and len(seen) >= symbols:
            continue
        if seen.get(g, 0) <= context:
            seen[g] = seen.get(g, 0) + 1
            keep.append(i)
    rows = np.array(sorted(keep), dtype=np.int64)
    return Background(np.asarray(x, dtype=np.float64)[rows], np.asarray(groups)[rows])


def explain(ensemble: Any, x: np.ndarray, *, groups: np.ndarray | None = None, rows: Sequence[int] | None = None) -> Attribution:
    """SHAP attribution of ``ensemble.predict`` on ``x[rows]`` (all rows by default).

    ``x`` and ``groups`` are laid out as for ``ensemble.predict``: a sequence member reads each row's
    history from the earlier rows of its group, so pass that history along and pick the rows to explain.

    Raises:
        ExplainError: the ensemble has a sequence member but no background, or an attribution does not add up.
    """
    x = np.asarray(x, dtype=np.float64)
    rows = np.arange(len(x)) if rows is None else np.asarray(rows, dtype=np.int64)
    names = list(ensemble.feature_names)
    values, base = np.zeros((len(rows), x.shape[1])), np.zeros(len(rows))
    for family, member in ensemble.members.items():
        weight = ensemble.weights.get(family, 0.0)
        if not weight:
            continue
        phi, b = member_shap(member, x, groups=groups, rows=rows, background=getattr(ensemble, "background", None))
        values += weight * phi / ensemble.scales[family]
        base += weight * b / ensemble.scales[family]
    scores = ensemble.predict(x, groups=groups)[rows]
    _check_additivity(scores, base + values.sum(axis=1), "ensemble")
    return Attribution(values, base, names)


def member_shap(member: Any, x: np.ndarray, *, groups: np.ndarray | None, rows: np.ndarray,
                background: Background | None) -> tuple[np.ndarray, np.ndarray]:
    """``(φ rows × features, base per row)`` of one learner (see the module docstring for which explainer)."""
    family = member.family
    if family == "sklearn_ridge":
        return _linear(member, x[rows])
    if family in ("sklearn_hgb", "xgboost", "lightgbm"):
        return _tree(member, x[rows])
    if family in ("torch_mlp", "torch_tcn"):
        if background is None:
            raise ExplainError(f"{family}: the ensemble stores no background sample to explain a network against "
                               "(retrain to get one)")
        return _deep(member, x, groups=groups, rows=rows, background=background)
    raise ExplainError(f"{family}: no explainer for this learner family")


def _linear(member: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import shap

    prep, ridge = member.model[:-1], member.model[-1]
    z = prep.transform(member._check(x))
    explainer = shap.LinearExplainer((ridge.coef_, ridge.intercept_), np.zeros((1, z.shape[1])))
    phi = np.asarray(explainer.shap_values(z), dtype=np.float64)
    return phi, np.full(len(x), float(explainer.expected_value))


def _tree(member: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import shap

    explainer = shap.TreeExplainer(_trees_used(member))
    phi = np.asarray(explainer.shap_values(member._check(x), check_additivity=False), dtype=np.float64)
    base = float(np.ravel(explainer.expected_value)[0])
    _check_additivity(member.predict(x), base + phi.sum(axis=1), member.family)
    return phi, np.full(len(x), base)


def _trees_used(member: Any) -> Any:
    """The model restricted to the trees its ``predict`` uses (boosting keeps some past the early-stopping point)."""
    if member.family == "xgboost":
        return member.model.get_booster()[: int(member.params["best_iteration"]) + 1]
    if member.family == "lightgbm":
        import lightgbm as lgb

        return lgb.Booster(model_str=member.model.booster_.model_to_string(num_iteration=int(member.params["best_iteration"])))
    return member.model


def _deep(member: Any, x: np.ndarray, *, groups: np.ndarray | None, rows: np.ndarray,
          background: Background) -> tuple[np.ndarray, np.ndarray]:
    import shap
    import torch

    from models.torch_learners import _torch_session

    sequence = member.family == "torch_tcn"
    x = member._check(x)
    with _torch_session(member._p()["threads"]):
        inputs = member._inputs(member.scaler.transform(x), member._groups(groups, len(x)))(torch.as_tensor(rows))
        ref_rows = background.anchors() if sequence else background.sample()
        reference = member._inputs(member.scaler.transform(background.x), background.groups)(torch.as_tensor(ref_rows))
        # A copy: DeepExplainer hooks the layers and leaves tensors on them, which would then be saved with the member.
        net = _Column(copy.deepcopy(member.model)).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # shap's notes on unrecognised modules (the wrapper) and on grads
            explainer = shap.DeepExplainer(net, reference)
            phi = np.asarray(explainer.shap_values(inputs, check_additivity=False), dtype=np.float64)
    phi = phi.reshape(*inputs.shape) * member.label_scale  # shap may append an output axis of 1
    base = np.full(len(rows), float(np.ravel(explainer.expected_value)[0]) * member.label_scale + member.label_center)
    if sequence:
        phi = phi.sum(axis=1)  # a feature's contribution over its window's bars
        base = base + phi[:, -1]  # the real-row channel: how much history the symbol has
        phi = phi[:, :-1]
    per_feature = phi[:, : len(member.scaler.center)].copy()
    np.add.at(per_feature.T, member.scaler.missing, phi[:, len(member.scaler.center):].T)  # indicators → their feature
    _check_additivity(member.predict(x, groups=groups)[rows], base + per_feature.sum(axis=1), member.family)
    return per_feature, base


def _column_class() -> type:
    from torch import nn

    class Column(nn.Module):
        """The network with a trailing output axis: DeepExplainer expects (batch, outputs)."""

        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> Any:
            return self.net(x).unsqueeze(-1)

    return Column


def _Column(net: Any) -> Any:  # built lazily so that torch loads only when explaining
    return _column_class()(net)


def _check_additivity(scores: np.ndarray, total: np.ndarray, what: str) -> None:
    scores = np.asarray(scores, dtype=np.float64)
    spread = float(np.nanstd(scores)) if len(scores) > 1 else 0.0
    scale = max(spread, float(np.nanmax(np.abs(scores))) if len(scores) else 0.0, 1e-12)
    gap = float(np.nanmax(np.abs(scores - total))) if len(scores) else 0.0
    if gap > ADDITIVITY_TOLERANCE * scale:
        raise ExplainError(f"{what}: SHAP values plus base differ from the score by {gap:.3g} (scale {scale:.3g})")
