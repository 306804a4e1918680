"""What a backtest produced (:class:`BacktestResult`): the equity curve, the holdings, the fills, and
the statistics read from them (metrics, round trips, trade statistics).

Example:
    >>> import polars as pl
    >>> from models.backtest import run_signal_backtest
    >>> bars = pl.DataFrame({"ts": [0, 1, 2, 3], "open": [10.0, 10.0, 12.0, 11.0], "close": [10.0, 12.0, 11.0, 11.0]})
    >>> r = run_signal_backtest(bars, [1, 1, 0, 0], initial_cash=1_000.0)
    >>> r.round_trips().select("side", "entry_ts", "exit_ts", "pnl").rows()
    [('long', 1, 3, 100.0)]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from models import performance as perf

COST_FIELDS = ("commission", "spread", "impact", "cost")


@dataclass(frozen=True)
class BacktestResult:
    """What a backtest produced.

    Attributes:
        equity: one row per timestamp: ``ts, cash, long_value, short_value, equity,
            gross_exposure, net_exposure, traded_notional, commission, spread, impact,
            cost, financing, borrow, turnover, return`` (values at the bar's close).
        positions: ``ts, symbol, shares, close, value`` for every non-zero holding.
        trades: ``decision_ts, ts, symbol, shares`` (signed), ``side, price, notional,
            commission, spread, impact, cost``.
        initial_cash: cash before the first bar.
    """

    equity: pl.DataFrame
    trades: pl.DataFrame
    initial_cash: float
    #: Makes :attr:`positions` on first use (a holdings table is as large as the book times the bars).
    build_positions: Callable[[], pl.DataFrame] = field(repr=False, compare=False)

    @functools.cached_property
    def positions(self) -> pl.DataFrame:
        """``ts, symbol, shares, close, value`` for every non-zero holding (made on first use)."""
        return self.build_positions()

    def __reduce__(self) -> tuple[Callable[..., BacktestResult], tuple[pl.DataFrame, pl.DataFrame, float, pl.DataFrame]]:
        """Pickled (Dagster's IO manager, a process pool) with the positions built: the builder is a closure over the
        run's grids, which pickle cannot carry."""
        return _restored, (self.equity, self.trades, self.initial_cash, self.positions)

    @property
    def returns(self) -> np.ndarray:
        """Simple return of each bar (the first against ``initial_cash``)."""
        return self.equity["return"].to_numpy()

    @property
    def turnover(self) -> float:
        """Mean two-sided turnover per bar (traded notional over the previous bar's equity)."""
        return float(self.equity["turnover"].mean())

    def metrics(self, periods_per_year: int, risk_free: float = 0.0) -> dict[str, float]:
        """:func:`models.performance.summary` of the returns plus turnover, exposure and cost totals."""
        out = perf.summary(self.returns, periods_per_year=periods_per_year, risk_free=risk_free)
        out["turnover"] = self.turnover
        out["exposure"] = perf.exposure(self.equity["gross_exposure"].to_numpy())
        out["trades"] = self.trades.height
        for column in COST_FIELDS:
            out[f"total_{column}"] = float(self.trades[column].sum())
        out["total_financing"], out["total_borrow"] = float(self.equity["financing"].sum()), float(self.equity["borrow"].sum())
        return out

    def round_trips(self) -> pl.DataFrame:
        """Each position from flat back to flat, per symbol (a flip closes one and opens the next).

        Columns: ``symbol, side`` (long/short), ``entry_ts, exit_ts`` (null while open), ``bars``
        (bars held), ``max_shares``, ``entry_value`` (the largest absolute notional at entry prices), ``pnl``
        (cash in and out of the trip after its fills' costs, plus the open remainder at the last
        close), ``return`` (pnl over entry value) and ``open``. A fill that flips the position
        splits its costs in proportion to the shares on each side.
        """
        last_close = self.positions.group_by("symbol").agg(pl.col("close").last()) if self.positions.height else None
        closes = dict(last_close.iter_rows()) if last_close is not None else {}
        index = {ts: i for i, ts in enumerate(self.equity["ts"].to_list())}
        rows: list[dict[str, object]] = []
        for (symbol,), fills in self.trades.sort("ts").group_by("symbol", maintain_order=True):
            pos, trip = 0, None
            for ts, shares, price, cost in fills.select("ts", "shares", "price", "cost").iter_rows():
                while shares:
                    if pos == 0:
                        trip = {"symbol": symbol, "side": "long" if shares > 0 else "short", "entry_ts": ts, "cash": 0.0,
                                "max_shares": 0, "entry_value": 0.0}
                    closing = -pos if pos and (pos > 0) != (shares > 0) else 0
                    part = shares if not closing or abs(shares) <= abs(closing) else closing
                    share_cost = cost * abs(part) / abs(shares)
                    trip["cash"] += -part * price - share_cost
                    cost -= share_cost
                    pos += part
                    shares -= part
                    trip["max_shares"] = max(trip["max_shares"], abs(pos))
                    if not closing:  # the largest notional the trip reached, at the prices it was built at
                        trip["entry_value"] = max(trip["entry_value"], abs(pos) * price)
                    if pos == 0:
                        rows.append(_trip_row(trip, ts, 0.0, index, open_=False))
            if pos:
                rows.append(_trip_row(trip, None, pos * closes.get(symbol, 0.0), index, open_=True, last=len(index) - 1))
        schema = {"symbol": pl.String, "side": pl.String, "entry_ts": self.equity["ts"].dtype, "exit_ts": self.equity["ts"].dtype,
                  "bars": pl.Int64, "max_shares": pl.Int64, "entry_value": pl.Float64, "pnl": pl.Float64, "return": pl.Float64,
                  "open": pl.Boolean}
        return pl.DataFrame(rows, schema=schema)

    def trade_stats(self) -> dict[str, float]:
        """Round-trip statistics of the closed trips: count, win rate, profit factor, average (win, loss) trade,
        average bars held, and exposure (the share of bars with any position)."""
        trips = self.round_trips()
        closed = trips.filter(~pl.col("open"))
        pnl = closed["pnl"].to_numpy()
        wins, losses = pnl[pnl > 0], pnl[pnl < 0]
        held = (self.equity["long_value"] - self.equity["short_value"]).to_numpy() != 0
        return {
            "round_trips": float(closed.height), "open_trips": float(trips.height - closed.height),
            "win_rate": float(len(wins) / len(pnl)) if len(pnl) else math.nan,
            "profit_factor": float(wins.sum() / -losses.sum()) if len(losses) and losses.sum() else (math.inf if len(wins) else math.nan),
            "avg_trade": float(pnl.mean()) if len(pnl) else math.nan,
            "avg_win": float(wins.mean()) if len(wins) else math.nan,
            "avg_loss": float(losses.mean()) if len(losses) else math.nan,
            "avg_return": float(closed["return"].mean()) if closed.height else math.nan,
            "avg_bars_held": float(closed["bars"].mean()) if closed.height else math.nan,
            "exposure_time": float(held.mean()) if len(held) else math.nan,
        }


def _restored(equity: pl.DataFrame, trades: pl.DataFrame, initial_cash: float, positions: pl.DataFrame) -> BacktestResult:
    return BacktestResult(equity=equity, trades=trades, initial_cash=initial_cash, build_positions=functools.partial(_given, positions))


def _given(frame: pl.DataFrame) -> pl.DataFrame:
    return frame


def _trip_row(trip: dict[str, object], exit_ts: object, mark: float, index: dict[object, int], *, open_: bool,
              last: int | None = None) -> dict[str, object]:
    pnl = float(trip["cash"]) + mark
    end = index[exit_ts] if exit_ts is not None else last
    value = float(trip["entry_value"])
    return {"symbol": trip["symbol"], "side": trip["side"], "entry_ts": trip["entry_ts"], "exit_ts": exit_ts,
            "bars": int(end - index[trip["entry_ts"]]), "max_shares": int(trip["max_shares"]), "entry_value": value,
            "pnl": pnl, "return": pnl / value if value else math.nan, "open": open_}

