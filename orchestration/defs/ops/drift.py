"""Drift of the features and of the predictions against the production model's training window.

*Reference* = the rows the production ensemble was trained on (its ``training_window`` in the model store);
*current* = the newest ``window_sessions`` sessions of the offline store. Each feature is compared with

* **PSI** (population stability index) over ten quantile bins of the reference (plus the open ends), each
  share floored at 1e-4 so an empty bin counts as a large but finite shift: PSI = Σ (c − r) · ln(c / r).
  Rule of thumb: < 0.1 stable, 0.1–0.25 moving, > 0.25 shifted;
* **KS**, the two-sample Kolmogorov–Smirnov statistic (the largest gap between the two empirical CDFs, 0..1).
  The statistic, not its p-value: on tens of thousands of rows every p-value is tiny.

**Natural drift.** A few sessions are never distributed like a year: a feature that is constant through a
session (the previous session's sector-relative return) or moves slowly (78-bar volatility) has only a handful of
distinct values in a week. So each feature is also measured on every run of ``window_sessions`` consecutive
sessions *inside* the training window; the largest of those is its natural level, what the model has already
seen a week look like. Measured on the synthetic market (12 symbols, 82 sessions, newest 5 held out): without
this, 2 of 49 features crossed PSI 0.25 on unshifted data (``xs_relsectorprev_1`` at PSI 1.66).

A feature (or the score) *warns* from ``max(psi_warn, natural PSI)`` or ``max(ks_warn, natural KS)`` on, and
*blocks* from ``max(psi_block, NATURAL_MARGIN × natural PSI)`` or from ``max(ks_block, natural KS + (1 − natural
KS) / 2)`` — KS is at most 1, so its margin is half the way from the natural level to complete separation
(thresholds: ``ALPHALINE_DRIFT_*``).
Calendar features (``sess_*``) and the market regime (``xs_mktregime_*``, one value per timestamp for the whole
universe) are left out: they describe when, not what.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref, same, shifted = rng.normal(size=20_000), rng.normal(size=5_000), rng.normal(1.0, size=5_000)
    >>> round(psi(ref, same), 3) < 0.01, round(psi(ref, shifted), 1) > 0.25, round(ks(ref, shifted), 2)
    (True, True, 0.38)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Level = Literal["ok", "warn", "block"]
#: Features left out of the drift checks: the calendar, and the market regime (see the module docstring).
IGNORED_PREFIXES = ("sess_", "xs_mktregime_")
MIN_ROWS = 200  # fewer current (or reference) values than this: too few to judge
#: Blocking needs this many times the largest PSI any week of the training window showed.
NATURAL_MARGIN = 2.0
_FLOOR = 1e-4
_BINS = 10


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


class Reference:
    """One column of the reference, prepared once: sorted values, quantile bins and their shares, its own CDF."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.sort(_finite(values))
        self.edges = np.unique(np.quantile(self.values, np.linspace(0, 1, _BINS + 1)[1:-1])) if len(self) else np.array([])
        self.shares = self._shares(self.values)
        self.cdf = np.searchsorted(self.values, self.values, side="right") / max(len(self), 1)

    def __len__(self) -> int:
        return len(self.values)

    def _shares(self, values: np.ndarray) -> np.ndarray:
        # Bins right-closed on the reference's quantiles; a constant reference gives two: at/below it, above it.
        counts = np.bincount(np.searchsorted(self.edges, values, side="left"), minlength=len(self.edges) + 1)
        return np.maximum(counts / max(len(values), 1), _FLOOR)

    def psi(self, current: np.ndarray) -> float:
        c, r = self._shares(_finite(current)), self.shares
        return float(np.sum((c - r) * np.log(c / r)))

    def ks(self, current: np.ndarray) -> float:
        """The exact two-sample KS statistic: the CDFs compared at every value of either sample."""
        cur = np.sort(_finite(current))
        m = len(cur)
        at_ref = np.abs(self.cdf - np.searchsorted(cur, self.values, side="right") / m)
        at_cur = np.abs(np.searchsorted(self.values, cur, side="right") / len(self) - np.searchsorted(cur, cur, side="right") / m)
        return float(max(at_ref.max(initial=0.0), at_cur.max(initial=0.0)))


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of ``current`` against ``reference`` over the reference's quantile bins."""
    return Reference(reference).psi(current)


def ks(reference: np.ndarray, current: np.ndarray) -> float:
    """The two-sample Kolmogorov–Smirnov statistic (0: same distribution, 1: disjoint)."""
    return Reference(reference).ks(current)


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    psi_warn: float = 0.10
    psi_block: float = 0.25
    ks_warn: float = 0.10
    ks_block: float = 0.20


@dataclass(frozen=True, kw_only=True)
class Drift:
    """One column's drift, its natural level and its verdict."""

    name: str
    psi: float
    ks: float
    natural_psi: float
    natural_ks: float
    n_reference: int
    n_current: int
    level: Level

    def line(self) -> str:
        return f"{self.name} PSI {self.psi:.3f} KS {self.ks:.3f} (a training week: up to {self.natural_psi:.3f}/{self.natural_ks:.3f})"


def measure(name: str, reference: np.ndarray, current: np.ndarray, thresholds: Thresholds, *,
            weeks: Sequence[np.ndarray] = ()) -> Drift | None:
    """``name``'s drift of ``current`` against ``reference``; ``weeks``: windows of the reference for its natural level.

    ``None`` when either side has fewer than :data:`MIN_ROWS` finite values.
    """
    ref, cur = Reference(reference), _finite(current)
    if len(ref) < MIN_ROWS or len(cur) < MIN_ROWS:
        return None
    p, k = ref.psi(cur), ref.ks(cur)
    usable = [w for w in weeks if len(_finite(w)) >= MIN_ROWS]
    nat_p = max((ref.psi(w) for w in usable), default=0.0)
    nat_k = max((ref.ks(w) for w in usable), default=0.0)
    t = thresholds
    blocks = p >= max(t.psi_block, NATURAL_MARGIN * nat_p) or k >= max(t.ks_block, nat_k + (1 - nat_k) / 2)
    warns = p >= max(t.psi_warn, nat_p) or k >= max(t.ks_warn, nat_k)
    level: Level = "block" if blocks else "warn" if warns else "ok"
    return Drift(name=name, psi=round(p, 6), ks=round(k, 6), natural_psi=round(nat_p, 6), natural_ks=round(nat_k, 6),
                 n_reference=len(ref), n_current=len(cur), level=level)


def worst_level(drifts: list[Drift]) -> Level:
    levels = {d.level for d in drifts}
    return "block" if "block" in levels else "warn" if "warn" in levels else "ok"


def summary(drifts: list[Drift], what: str, thresholds: Thresholds, *, top: int = 5) -> str:
    """One line: the verdict, the worst columns first, the thresholds that applied."""
    level = worst_level(drifts)
    rank = {"block": 2, "warn": 1, "ok": 0}
    ranked = sorted(drifts, key=lambda d: (-rank[d.level], -d.psi))
    flagged = [d for d in ranked if d.level == level] if level != "ok" else []
    t = thresholds
    limits = (f"warn from PSI {t.psi_warn} / KS {t.ks_warn} or a training week's level, block from PSI {t.psi_block} "
              f"or {NATURAL_MARGIN:g}× a week's / KS {t.ks_block} or halfway from a week's to 1")
    if level == "ok":
        worst = ranked[0].line() if ranked else "-"
        return f"{what}: no drift over {len(drifts)} column(s) (largest: {worst}; {limits})"
    names = "; ".join(d.line() for d in flagged[:top]) + (f"; +{len(flagged) - top} more" if len(flagged) > top else "")
    verb = "shifted past the blocking threshold" if level == "block" else "drifting (warning)"
    return f"{what}: {len(flagged)} of {len(drifts)} column(s) {verb}: {names} ({limits})"
