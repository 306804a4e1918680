"""PyTorch learners behind the :mod:`models.learners` interface: an MLP and a causal TCN.

``MLPLearner`` (``torch_mlp``) reads one row's feature vector. ``TCNLearner``
(``torch_tcn``) reads the last ``window`` rows of the same symbol, ending at the
current row, through dilated causal convolutions, so a prediction never sees a
later row. Both share one recipe:

* the most recent ``max_rows`` rows are kept; the last 15% of them (by time, see
  :func:`models.learners.split_tail`) are the validation slice;
* features are scaled by the training slice's median and IQR, clipped to ±5, and a
  missing value becomes 0 plus a missing-indicator column (for the features that
  had gaps in training);
* the label is standardised (returns are ~1e-3) and clipped to ±5 for training;
  predictions are mapped back to return units;
* AdamW on mini-batches, MSE loss; after each epoch the validation slice's IC
  (correlation of prediction and label, which is what the model is used for) decides
  early stopping, and the best epoch's weights are restored;
* training runs seeded, with deterministic algorithms and one thread by default
  (``threads``, at most two: on a shared two-core box, two threads stall whenever
  another job holds a core), then puts torch's global settings back; the same data
  gives the same predictions;
* importance is the mean |gradient × input| per feature on the validation slice.

``import models.torch_learners`` does not import torch; fitting or loading a model
does. Saved models hold the network's ``state_dict`` (``torch.save`` bytes) inside
the learner's pickle, so a loaded model predicts bit-identically.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 3)); y = 0.01 * x[:, 0] + 0.01 * rng.normal(size=2000)
    >>> groups = np.arange(2000) % 4  # four symbols, interleaved in time order
    >>> model = TCNLearner(params={"window": 4, "batch_size": 256, "max_epochs": 3}).fit(x, y, feature_names=["a", "b", "c"], groups=groups)
    >>> max(model.feature_importance(), key=model.feature_importance().get)
    'a'
    >>> model.predict(x[:5], groups=groups[:5]).shape
    (5,)
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

import numpy as np

from models.learners import SEED, _Base, split_tail

CLIP = 5.0
MAX_THREADS = 2  # the research box has two cores shared with other jobs
PREDICT_BATCH = 8192
IMPORTANCE_ROWS = 20_000  # the most recent validation rows used for gradient × input


@dataclass
class _Scaler:
    """Per-feature median/IQR scaling fitted on training rows; NaN → 0 plus indicator columns."""

    center: np.ndarray
    scale: np.ndarray
    missing: np.ndarray  # indices of features that had NaN in training; each gets an indicator column

    @classmethod
    def fit(cls, x: np.ndarray) -> _Scaler:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column is handled below
            q25, center, q75 = np.nanquantile(x, [0.25, 0.5, 0.75], axis=0)
            spread = (q75 - q25) / 1.349  # IQR of a normal, in standard deviations
            # A feature with a degenerate IQR (flags, counts) falls back to its standard deviation.
            spread = np.where(np.isfinite(spread) & (spread > 0), spread, np.nanstd(x, axis=0))
        spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
        return cls(np.nan_to_num(center), spread, np.flatnonzero(np.isnan(x).any(axis=0)))

    @property
    def width(self) -> int:
        return len(self.center) + len(self.missing)

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = np.clip((x - self.center) / self.scale, -CLIP, CLIP)
        flags = np.isnan(x[:, self.missing])
        return np.hstack([np.nan_to_num(z, nan=0.0), flags]).astype(np.float32)

    def fold(self, per_column: np.ndarray) -> np.ndarray:
        """Per-feature totals of a per-column quantity (an indicator column counts for its feature)."""
        n = len(self.center)
        total = per_column[:n].copy()
        np.add.at(total, self.missing, per_column[n:])
        return total


@contextlib.contextmanager
def _torch_session(threads: int, seed: int = SEED) -> Iterator[None]:
    """Seeded, deterministic, ``threads`` (at most ``MAX_THREADS``); torch's global state is restored on exit."""
    import torch

    before, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(max(1, min(threads, MAX_THREADS)))
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.set_num_threads(before)
            torch.use_deterministic_algorithms(deterministic)


def group_windows(groups: np.ndarray, window: int) -> np.ndarray:
    """Row indices of each row's window: its group's previous ``window - 1`` rows, then itself.

    Rows must be in time order. Missing history is ``-1`` (left padding).

    Example:
        >>> group_windows(np.array([0, 1, 0, 0]), 2).tolist()
        [[-1, 0], [-1, 1], [0, 2], [2, 3]]
    """
    order = np.argsort(groups, kind="stable")  # rows of one group, still in time order
    sorted_groups = groups[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    out = np.full((len(order), window), -1, dtype=np.int64)
    for lag in range(window):
        has = rank >= lag
        out[order[has], window - 1 - lag] = order[np.flatnonzero(has) - lag]
    return out


def _mlp(n_in: int, hidden: tuple[int, ...], dropout: float) -> Any:
    from torch import nn

    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.GELU(), nn.Dropout(dropout)]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, 1), nn.Flatten(0))


@cache
def _tcn_class() -> type:
    """The TCN module class (defined on first use so that torch loads only when needed)."""
    from torch import nn

    class CausalTCN(nn.Module):
        """1×1 embedding, residual causal convolutions with kernel 2 and dilation 1, 2, 4, ..., head on the last step.

        Only the last step's output is used, so level ``k`` (dilation ``2**k``) is evaluated only
        at the steps the last step depends on: every ``2**(k+1)``-th step counting back from the
        end. That is a kernel-2, stride-2 convolution over the previous level, the same weights
        and the same output as the dilated stack at a quarter of its cost. The input spans
        ``2**levels`` steps, oldest first, so no step sees a later one. The embedding (a 1×1
        convolution) is a ``Linear`` on the gathered ``(batch, step, feature)`` rows, which
        spares transposing the wide input.
        """

        def __init__(self, n_in: int, channels: int, levels: int, dropout: float) -> None:
            super().__init__()
            self.embed = nn.Sequential(nn.Linear(n_in, channels), nn.GELU())
            self.blocks = nn.ModuleList(
                nn.Sequential(nn.Conv1d(channels, channels, 2, stride=2), nn.GELU(), nn.Dropout(dropout)) for _ in range(levels)
            )
            self.head = nn.Linear(channels, 1)

        def forward(self, x: Any) -> Any:  # (batch, 2**levels, n_in) → (batch,)
            h = self.embed(x).transpose(1, 2).contiguous()  # Conv1d on a non-contiguous batch takes a ~20x slower path
            for block in self.blocks:
                h = h[:, :, 1::2] + block(h)  # the residual keeps the later step of each (t - dilation, t) pair
            return self.head(h[:, :, -1]).squeeze(-1)

    return CausalTCN


def _train(net: Any, inputs: Callable[[Any], Any], y: Any, *, train: Any, valid: Any, p: dict[str, Any]) -> tuple[int, int]:
    """AdamW on shuffled mini-batches, early-stopped on validation IC; leaves the best epoch's weights in ``net``.

    Returns:
        The best epoch (1-based) and the number of epochs run.
    """
    import torch

    opt = torch.optim.AdamW(net.parameters(), lr=p["learning_rate"], weight_decay=p["weight_decay"])
    shuffle = torch.Generator().manual_seed(SEED)
    best_score, best_epoch, best_state, epoch = -math.inf, 0, None, 0
    for epoch in range(1, p["max_epochs"] + 1):
        net.train()
        for rows in train[torch.randperm(len(train), generator=shuffle)].split(p["batch_size"]):
            loss = torch.nn.functional.mse_loss(net(inputs(rows)), y[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        score = _correlation(_forward(net, inputs, valid), y[valid])
        if score > best_score + 1e-6:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        elif epoch - best_epoch >= p["patience"]:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return best_epoch, epoch


def _correlation(pred: Any, y: Any) -> float:
    """Pearson correlation (the pooled IC); -inf when undefined, e.g. for a constant prediction."""
    import torch

    value = float(torch.corrcoef(torch.stack([pred, y]))[0, 1]) if len(y) > 1 else math.nan
    return value if math.isfinite(value) else -math.inf


def _forward(net: Any, inputs: Callable[[Any], Any], rows: Any) -> Any:
    import torch

    net.eval()
    with torch.no_grad():
        return torch.cat([net(inputs(chunk)) for chunk in rows.split(PREDICT_BATCH)]) if len(rows) else torch.zeros(0)


def _attribution(net: Any, inputs: Callable[[Any], Any], rows: Any, n_columns: int) -> np.ndarray:
    """Mean |gradient × input| per input column (the last axis) over ``rows``, summed over window steps."""
    import torch

    total = np.zeros(n_columns)
    for chunk in rows.split(PREDICT_BATCH):
        x = inputs(chunk).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(net(x).sum(), x)
        per_column = (grad * x.detach()).abs().reshape(-1, x.shape[-1]).sum(dim=0)
        total += per_column[:n_columns].double().numpy()
    return total / max(len(rows), 1)


@dataclass
class _TorchLearner(_Base):
    """Shared fit/predict/save recipe; subclasses build the network and the per-row inputs."""

    defaults: ClassVar[dict[str, Any]] = {}
    fitted_keys: ClassVar[frozenset[str]] = frozenset({"best_epoch", "epochs"})
    scaler: _Scaler | None = None
    label_center: float = 0.0
    label_scale: float = 1.0
    importance: dict[str, float] = field(default_factory=dict)

    def _p(self) -> dict[str, Any]:
        unknown = set(self.params) - set(self.defaults) - self.fitted_keys
        if unknown:
            raise ValueError(f"params: unknown key(s) {sorted(unknown)} for {self.family}; known: {sorted(self.defaults)}")
        return {**self.defaults, **self.params}

    def _build(self) -> Any:
        raise NotImplementedError

    def _inputs(self, z: np.ndarray, groups: np.ndarray | None) -> Callable[[Any], Any]:
        raise NotImplementedError

    def _groups(self, groups: np.ndarray | None, n: int) -> np.ndarray | None:
        if groups is None:
            return None
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups: expected one symbol code per row ({n}), got shape {groups.shape}")
        return groups

    def fit(self, x: np.ndarray, y: np.ndarray, *, feature_names: list[str], groups: np.ndarray | None = None) -> _TorchLearner:
        import torch

        p = self._p()
        self.feature_names = list(feature_names)
        x, y = self._check(x), np.asarray(y, dtype=np.float64)
        groups = self._groups(groups, len(x))
        if not np.isfinite(y).all():
            raise ValueError(f"labels: {int((~np.isfinite(y)).sum())} of {len(y)} are missing or infinite; drop those rows first")
        keep = slice(max(0, len(y) - p["max_rows"]), len(y))  # the most recent rows
        x, y, groups = x[keep], y[keep], None if groups is None else groups[keep]
        train, valid = split_tail(len(y))
        self.scaler = _Scaler.fit(x[train])
        self.label_center, self.label_scale = float(y[train].mean()), float(y[train].std() or 1.0)
        with _torch_session(p["threads"]):
            inputs = self._inputs(self.scaler.transform(x), groups)
            target = torch.from_numpy(np.clip((y - self.label_center) / self.label_scale, -CLIP, CLIP).astype(np.float32))
            rows = torch.arange(len(y))
            self.model = self._build()
            best, ran = _train(self.model, inputs, target, train=rows[train], valid=rows[valid], p=p)
            self.params.update(best_epoch=best, epochs=ran)
            attribution = _attribution(self.model, inputs, rows[valid][-IMPORTANCE_ROWS:], self.scaler.width)
        per_feature = self.scaler.fold(attribution)
        total = per_feature.sum()
        shares = per_feature / total if total > 0 else np.full(len(per_feature), 1 / len(per_feature))
        self.importance = dict(zip(self.feature_names, shares.tolist(), strict=True))
        return self

    def predict(self, x: np.ndarray, *, groups: np.ndarray | None = None) -> np.ndarray:
        import torch

        x = self._check(x)
        groups = self._groups(groups, len(x))
        with _torch_session(self._p()["threads"]):
            inputs = self._inputs(self.scaler.transform(x), groups)
            out = _forward(self.model, inputs, torch.arange(len(x)))
        return out.double().numpy() * self.label_scale + self.label_center

    def feature_importance(self) -> dict[str, float]:
        return dict(self.importance)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.model is not None:
            import torch

            buffer = io.BytesIO()
            torch.save(self.model.state_dict(), buffer)
            state["model"] = buffer.getvalue()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if isinstance(self.model, bytes):
            import torch

            weights = torch.load(io.BytesIO(self.model), weights_only=True)
            self.model = self._build()
            self.model.load_state_dict(weights)
            self.model.eval()


@dataclass
class MLPLearner(_TorchLearner):
    """Feed-forward network on one row's features (GELU, dropout, AdamW weight decay); ignores ``groups``.

    ``params`` (unknown keys are refused): ``hidden`` layer widths, ``dropout``,
    ``learning_rate``, ``weight_decay``, ``batch_size``, ``max_epochs``, ``patience``
    (epochs without a better validation IC before stopping), ``max_rows`` (the most
    recent rows kept), ``threads``. After ``fit`` it also holds ``best_epoch`` and ``epochs``.
    """

    family: ClassVar[str] = "torch_mlp"
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": (64, 64), "dropout": 0.2, "learning_rate": 1e-3, "weight_decay": 1e-2,
        "batch_size": 2048, "max_epochs": 30, "patience": 4, "max_rows": 400_000, "threads": 1,
    }

    def _build(self) -> Any:
        p = self._p()
        return _mlp(self.scaler.width, tuple(p["hidden"]), p["dropout"])

    def _inputs(self, z: np.ndarray, groups: np.ndarray | None) -> Callable[[Any], Any]:
        import torch

        table = torch.from_numpy(z)
        return lambda rows: table[rows]


@dataclass
class TCNLearner(_TorchLearner):
    """Causal temporal convolutions over each row's last ``window`` rows of the same symbol.

    Rows with shorter history are left-padded with zeros; an indicator channel marks real
    rows. ``predict`` builds windows from the rows it is given, so pass each symbol's
    preceding ``window - 1`` rows along with the rows to score.

    ``params``: ``window`` (rows per window, this one included), ``channels``, and the
    training keys of :class:`MLPLearner` (``dropout`` ... ``threads``).
    """

    family: ClassVar[str] = "torch_tcn"
    defaults: ClassVar[dict[str, Any]] = {
        "window": 16, "channels": 32, "dropout": 0.2, "learning_rate": 1e-3, "weight_decay": 1e-2,
        "batch_size": 2048, "max_epochs": 12, "patience": 3, "max_rows": 300_000, "threads": 1,
    }

    @property
    def context(self) -> int:
        """Rows of history per symbol read before the row predicted (walk-forward and serving pass that many)."""
        return int(self._p()["window"]) - 1

    def _groups(self, groups: np.ndarray | None, n: int) -> np.ndarray | None:
        if groups is None:
            raise ValueError("groups: torch_tcn needs one symbol code per row")
        return super()._groups(groups, n)

    def _build(self) -> Any:
        p = self._p()
        return _tcn_class()(self.scaler.width + 1, p["channels"], self._levels(), p["dropout"])

    def _levels(self) -> int:
        return max(1, math.ceil(math.log2(self._p()["window"])))  # kernel 2: receptive field 2**levels >= window

    def _inputs(self, z: np.ndarray, groups: np.ndarray | None) -> Callable[[Any], Any]:
        import torch

        # One extra all-zero row is the padding that index -1 points at; the last column marks real rows.
        table = torch.from_numpy(np.vstack([np.hstack([z, np.ones((len(z), 1), np.float32)]), np.zeros((1, z.shape[1] + 1), np.float32)]))
        windows = group_windows(groups, self._p()["window"])
        span = 2 ** self._levels()  # steps older than the window are padding, like missing history
        windows = torch.from_numpy(np.hstack([np.full((len(windows), span - windows.shape[1]), -1), windows]))
        return lambda rows: table[windows[rows]]
