"""The synthetic market's generator: the price path of a universe over a bar grid, with its planted alpha and oracle.

:mod:`orchestration.market.synthetic` states the model (returns, volume, the four planted effects and the
oracle) and holds the configuration and the bar source; this module walks the bars once and schedules the
drift each observed event implies for the bars ahead (a ring buffer of :data:`RING` bars). The oracle at
horizon ``h`` is the drift already scheduled for bars ``t+1 .. t+h`` at the close of bar ``t``.

Example:
    >>> schedule = _Schedule(2)
    >>> schedule.add(0, 1, 2, np.array([0.01, -0.01]))  # seen at bar 0's close: drift on bars 1 and 2
    >>> schedule.ahead(0, 1).tolist(), schedule.ahead(0, 4).tolist()
    ([0.01, -0.01], [0.02, -0.02])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from orchestration.market.synthetic import SyntheticConfig


SECTORS = ("TECH", "FIN", "HEALTH", "ENERGY", "INDUST", "CONSUMER", "UTIL", "MATER")
HORIZONS = (1, 4, 26)

RING = 64  # drift schedule length in bars; longer than any effect's span


@dataclass
class Universe:
    """The symbols a path is drawn for (equities: ``synthetic._universe``; crypto: ``synthetic_crypto.crypto_universe``)."""

    names: list[str]
    sector: np.ndarray  # sector index per symbol
    beta: np.ndarray
    price0: np.ndarray
    volume_level: np.ndarray
    idio_var: np.ndarray  # long-run idiosyncratic variance per bar
    sectors: tuple[str, ...] = SECTORS
    volume_decimals: int = 0  # equities trade whole shares; crypto volume is fractional
    gaps: bool = True  # overnight gaps between sessions (none on a 24/7 market)
    trade_notional: float = 0.0  # average trade in USD (0: 120 shares a trade)


def _u_shape(pos: np.ndarray) -> np.ndarray:
    """Intraday profile over the session position in [0, 1], mean about 1."""
    return 0.75 + 1.5 * (2 * pos - 1) ** 2 * 0.5 + 0.35 * np.exp(-pos * 12)


class _Schedule:
    """Ring buffer of drift scheduled for the coming bars (shape: ring x symbols)."""

    def __init__(self, n: int):
        self.buf = np.zeros((RING, n))

    def add(self, t: int, first: int, count: int, per_bar: np.ndarray) -> None:
        for k in range(first, first + count):
            self.buf[(t + k) % RING] += per_bar

    def take(self, t: int) -> np.ndarray:
        row = self.buf[t % RING].copy()
        self.buf[t % RING] = 0.0
        return row

    def ahead(self, t: int, horizon: int) -> np.ndarray:
        idx = [(t + k) % RING for k in range(1, horizon + 1)]
        return self.buf[idx].sum(axis=0)


def _session_layout(grid: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bar: position in session (0..1), first-bar flag, last-bar flag."""
    g = grid.with_columns(
        pl.int_range(pl.len()).over("session").alias("b"), pl.len().over("session").alias("n")
    )
    b, n = g["b"].to_numpy(), g["n"].to_numpy()
    return (b + 0.5) / n, b == 0, b == n - 1


def run_path(cfg: SyntheticConfig, uni: Universe, grid: pl.DataFrame, rng: np.random.Generator) -> dict:
    """Walk ``grid``'s bars once: ``{"bars": OHLCV, VWAP, trade count, "oracle": by horizon}``, each (bars × symbols)."""
    n, T = cfg.n_symbols, grid.height
    pos, first, last = _session_layout(grid)
    bars_per_session = grid.group_by("session", maintain_order=True).len()["len"].to_numpy()
    next_len = np.repeat(np.append(bars_per_session[1:], bars_per_session[-1] if len(bars_per_session) else 0), bars_per_session)
    out = {k: np.empty((T, n)) for k in ("open", "high", "low", "close", "volume", "vwap", "trade_count")}
    oracle = {h: np.empty((T, n)) for h in HORIZONS}
    hm_bar = 0.0011**2  # long-run market variance per bar
    hm, hi = hm_bar, uni.idio_var.copy()
    sector_var = 0.0007**2
    a = cfg.coefficients
    sched = _Schedule(n)
    close = uni.price0.copy()
    session_ret = np.zeros(n)
    sector_onehot = np.eye(cfg.n_sectors)[uni.sector]
    for t in range(T):
        # Fixed number of draws per bar: the path up to a day never depends on the end date.
        z = rng.standard_normal((5, n))
        zm, _unused, zg = rng.standard_normal(3)  # three draws kept: the seeded paths stay the same
        zsec = rng.standard_normal(cfg.n_sectors)
        u_shape = _u_shape(pos[t])
        drift = sched.take(t)
        mkt = np.sqrt(hm) * u_shape * zm
        idio = np.sqrt(hi) * u_shape * z[0]
        shock = uni.beta * mkt + np.sqrt(sector_var) * u_shape * zsec[uni.sector] + idio
        gap = np.zeros(n)
        if first[t]:
            session_ret[:] = 0.0
            gap = (uni.beta * 0.004 * zg + 0.006 * z[1]) if uni.gaps else gap
            g_rel = gap - gap.mean()
            per_bar = -a["gap_reversal"] * g_rel / a["gap_bars"]
            drift += per_bar  # the gap bar itself carries its share
            sched.add(t, 1, int(a["gap_bars"]) - 1, per_bar)
        surprise = gap + shock
        ret = drift + surprise
        open_ = close * np.exp(gap)
        new_close = close * np.exp(ret)
        bar_sigma = np.sqrt(uni.beta**2 * hm + sector_var + hi) * u_shape
        high = np.maximum(open_, new_close) * np.exp(np.abs(z[2]) * 0.6 * bar_sigma)
        low = np.minimum(open_, new_close) * np.exp(-np.abs(z[3]) * 0.6 * bar_sigma)
        expected_vol = uni.volume_level * u_shape
        rel_shock = np.abs(shock) / bar_sigma
        volume = np.round(expected_vol * np.exp(0.35 * z[4] - 0.06) * (0.6 + 0.4 * rel_shock**2), uni.volume_decimals)
        mid = np.exp((np.log(open_) + np.log(new_close) + np.log(high) + np.log(low)) / 4)
        out["open"][t], out["close"][t], out["high"][t], out["low"][t] = open_, new_close, high, low
        out["vwap"][t] = np.clip(mid, low, high)
        out["volume"][t] = volume
        out["trade_count"][t] = np.maximum(1, np.round(volume * mid / uni.trade_notional if uni.trade_notional else volume / 120))
        # Events observed at this close schedule drift for the bars ahead.
        u_rel = surprise - surprise.mean()
        regime = np.clip(np.sqrt(hm / hm_bar), 0.5, 2.0)
        sched.add(t, 1, int(a["reversal_bars"]), -a["residual_reversal"] * regime * u_rel / a["reversal_bars"])
        rv = volume / expected_vol
        boost = np.clip(rv - a["volume_threshold"], 0.0, 2.0)
        sched.add(t, 1, int(a["volume_bars"]), a["volume_momentum"] * boost * u_rel / a["volume_bars"])
        session_ret += ret
        if last[t]:
            sector_ret = (sector_onehot.T @ session_ret) / sector_onehot.sum(axis=0).clip(min=1)
            rel = sector_ret[uni.sector] - session_ret.mean()
            sched.add(t, 1, int(next_len[t]), a["sector_momentum"] * rel / next_len[t])
        for h in HORIZONS:
            oracle[h][t] = sched.ahead(t, h)
        # GARCH(1,1) updates on the de-seasonalised shocks.
        hm = 0.05 * hm_bar + 0.10 * (mkt / u_shape) ** 2 + 0.85 * hm
        hi = 0.05 * uni.idio_var + 0.10 * (idio / u_shape) ** 2 + 0.85 * hi
        close = new_close
    return {"bars": out, "oracle": oracle}
