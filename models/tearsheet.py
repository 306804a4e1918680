"""A backtest tear sheet: a few PNG charts and a markdown summary in one folder.

Charts are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend
switch), so this works headless and inside Dagster runs.

Example:
    >>> import tempfile, polars as pl
    >>> from models.backtest import run_signal_backtest
    >>> bars = pl.DataFrame({"ts": [0, 1, 2, 3], "open": [10.0, 10.0, 12.0, 11.0], "close": [10.0, 12.0, 11.0, 11.0]})
    >>> result = run_signal_backtest(bars, [1, 1, -1, -1], initial_cash=1_000.0)
    >>> paths = write_tearsheet(result, tempfile.mkdtemp(), periods_per_year=252, ic_by_horizon={1: 0.05, 4: 0.03})
    >>> sorted(paths)
    ['drawdown', 'equity', 'ic_decay', 'rolling_sharpe', 'summary']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models import performance as perf
from models.backtest import BacktestResult


def write_tearsheet(
    result: BacktestResult,
    folder: str | Path,
    *,
    periods_per_year: int,
    ic_by_horizon: Mapping[int | str, float] | None = None,
    rolling_window: int | None = None,
    title: str = "Backtest",
) -> dict[str, Path]:
    """Write ``equity.png``, ``drawdown.png``, ``rolling_sharpe.png``, ``ic_decay.png`` (when
    ``ic_by_horizon`` is given) and ``summary.md`` into ``folder`` (created if missing).

    Args:
        result: a :class:`~models.backtest.BacktestResult`.
        folder: where the files go (existing files of the same names are replaced).
        periods_per_year: annualisation factor, e.g. ``performance.periods_per_year("15m")``.
        ic_by_horizon: mean IC per label horizon (bars), for the IC-decay bar chart.
        rolling_window: bars in the rolling Sharpe window (default: a quarter of a year).
        title: heading of the summary and of each chart.

    Returns:
        The path of each file written, by name (``equity``, ``drawdown``, ...).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ts = result.equity["ts"].to_numpy()
    returns = result.returns
    window = rolling_window or max(periods_per_year // 4, 2)
    rolling = pl.Series(returns)
    sharpe = (rolling.rolling_mean(window) / rolling.rolling_std(window) * math.sqrt(periods_per_year)).to_numpy()

    paths = {
        "equity": _chart(out / "equity.png", f"{title}: equity", lambda ax: ax.plot(ts, result.equity["equity"].to_numpy())),
        "drawdown": _chart(out / "drawdown.png", f"{title}: drawdown", lambda ax: ax.fill_between(ts, perf.drawdown(returns), 0.0, color="tab:red")),
        "rolling_sharpe": _chart(out / "rolling_sharpe.png", f"{title}: rolling Sharpe ({window} bars)", lambda ax: ax.plot(ts, sharpe)),
    }
    if ic_by_horizon:
        labels = [str(h) for h in ic_by_horizon]
        paths["ic_decay"] = _chart(out / "ic_decay.png", f"{title}: IC by horizon (bars)", lambda ax: ax.bar(labels, list(ic_by_horizon.values())))
    paths["summary"] = out / "summary.md"
    paths["summary"].write_text(_summary(result, periods_per_year, title, ic_by_horizon, [p.name for p in paths.values() if p.suffix == ".png"]))
    return paths


def _chart(path: Path, title: str, draw: Callable[[Axes], object]) -> Path:
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    draw(ax)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    return path


def _summary(result: BacktestResult, periods_per_year: int, title: str, ic: Mapping[int | str, float] | None, images: list[str]) -> str:
    metrics = result.metrics(periods_per_year)
    eq = result.equity["equity"]
    lines = [
        f"# {title}",
        "",
        f"{result.equity.height} bars from {result.equity['ts'][0]} to {result.equity['ts'][-1]}; "
        f"equity {result.initial_cash:,.2f} → {eq[-1]:,.2f}; {result.trades.height} trades; {periods_per_year} bars a year.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {_fmt(value)} |" for name, value in metrics.items()),
    ]
    if ic:
        lines += ["", "| horizon (bars) | mean IC |", "|---|---|", *(f"| {h} | {v:.4f} |" for h, v in ic.items())]
    lines += ["", *(f"![{Path(name).stem}]({name})" for name in images), ""]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if isinstance(value, float) and not np.isfinite(value):
        return "n/a" if np.isnan(value) else str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4f}"
