"""A backtest tear sheet: a few PNG charts and a markdown summary in one folder.

Charts are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend
switch), so this works headless and inside Dagster runs. ``summary.md`` links the
charts by file name (it sits beside them); :func:`embedded_summary` gives the same
markdown with each chart inlined as a ``data:`` URI, for viewers that cannot follow a
relative path (the Dagster UI's markdown metadata).

What the charts show (returns are simple, per bar; every return axis is in percent):

* ``equity``: cumulative return after costs (net), before costs (gross: the costs paid
  added back) and, when given, a benchmark such as the equal-weight universe;
* ``drawdown``: distance below the running peak of the net curve;
* ``rolling_sharpe``: annualised Sharpe over a window of whole sessions, about a sixth
  of the series (at most a quarter of a year), so the curve covers most of the window;
* ``ic_decay``: mean IC by label horizon.

Below the metrics, *research rigour* (:mod:`models.research`): the Sharpe ratio's 95 %
interval (circular block bootstrap), the probabilistic Sharpe ratio against 0 and, when
given, the mean IC's interval (``ic_series``) and, over every variant tried on the same
bars (``trials``: the model family, a parameter sweep), the deflated Sharpe ratio and the
probability of backtest overfitting (CSCV); when a parameter search ran (``search``:
:func:`models.search.read_rigour`), the same two for its pick among its trials; and when given
(``cpcv``: :meth:`models.cpcv.CPCVResult.summary`), the combinatorial purged CV table: each
learner's path Sharpe ratios and ICs, and PBO across the learners.

Example:
    >>> import tempfile, polars as pl
    >>> from models.backtest import run_signal_backtest
    >>> bars = pl.DataFrame({"ts": [0, 1, 2, 3], "open": [10.0, 10.0, 12.0, 11.0], "close": [10.0, 12.0, 11.0, 11.0]})
    >>> result = run_signal_backtest(bars, [1, 1, -1, -1], initial_cash=1_000.0)
    >>> paths = write_tearsheet(result, tempfile.mkdtemp(), periods_per_year=252, ic_by_horizon={1: 0.05, 4: 0.03})
    >>> sorted(paths)
    ['drawdown', 'equity', 'ic_decay', 'rolling_sharpe', 'summary']
    >>> embedded_summary(paths).count("](data:image/png;base64,")
    4
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from models import performance as perf
from models import research
from models.backtest import BacktestResult

#: Metrics shown as percentages in the summary (the rest are ratios, counts or money).
PERCENT_METRICS = frozenset({"annual_return", "annual_volatility", "max_drawdown", "win_rate", "exposure", "turnover",
                             "psr", "dsr", "pbo"})
_SESSIONS_PER_YEAR = 252


def write_tearsheet(
    result: BacktestResult,
    folder: str | Path,
    *,
    periods_per_year: int,
    ic_by_horizon: Mapping[int | str, float] | None = None,
    rolling_window: int | None = None,
    benchmark: np.ndarray | None = None,
    benchmark_label: str = "equal-weight universe",
    title: str = "Backtest",
    ic_series: np.ndarray | None = None,
    trials: Mapping[str, np.ndarray] | None = None,
    factor: Mapping[str, Any] | None = None,
    parameter_walk_forward: tuple[str, Any] | None = None,
    search: Mapping[str, Mapping[str, Any]] | None = None,
    cpcv: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``equity.png``, ``drawdown.png``, ``rolling_sharpe.png``, ``ic_decay.png`` (when
    ``ic_by_horizon`` is given) and ``summary.md`` into ``folder`` (created if missing).

    Args:
        result: a :class:`~models.backtest.BacktestResult`.
        folder: where the files go (existing files of the same names are replaced).
        periods_per_year: annualisation factor, e.g. ``performance.periods_per_year("15m")``.
        ic_by_horizon: mean IC per label horizon (bars), for the IC-decay bar chart.
        rolling_window: bars in the rolling Sharpe window (default: :func:`rolling_window`).
        benchmark: simple return of the benchmark on each bar of ``result.equity`` (e.g.
            :func:`equal_weight_returns`), drawn beside the strategy and summarised.
        benchmark_label: its name in the legend and the summary.
        title: heading of the summary and of each chart.
        ic_series: the IC of each period (cross-sectional), for its bootstrap interval.
        trials: per-bar net returns of every variant tried (this one included), for DSR and PBO.
        factor: :func:`models.evaluation.factor_report` of the scores: IC by horizon with 95% bands (drawn as
            error bars on the IC-decay chart), mean forward return by score quantile (``quantiles.png``) and the
            quantiles' turnover, in the summary.
        parameter_walk_forward: ``(parameter name, models.research.WalkForwardChoice)``: what a walk-forward
            choice of that parameter earned out of sample against each value held fixed.
        search: per searched learner family, :func:`models.research.sweep_rigour` of its parameter search
            (deflated Sharpe ratio of the best trial, PBO across the trials), as ``search_rigour.json`` keeps it.
        cpcv: :meth:`models.cpcv.CPCVResult.summary`: the model family under combinatorial purged CV.

    Returns:
        The path of each file written, by name (``equity``, ``drawdown``, ...).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ts = result.equity["ts"].to_numpy()
    x = np.arange(len(ts))  # bars, not wall time: nights and weekends would draw as long flat lines
    returns = result.returns
    window = rolling_window or default_rolling_window(len(returns), periods_per_year)
    curves = {"net (after costs)": _cumulative(returns), "gross (before costs)": _cumulative(gross_returns(result))}
    if benchmark is not None:
        curves[benchmark_label] = _cumulative(np.nan_to_num(np.asarray(benchmark, dtype=np.float64)))
    sharpe = _rolling_sharpe(returns, window, periods_per_year)
    sessions = window / max(periods_per_year // _SESSIONS_PER_YEAR, 1)

    paths = {
        "equity": _chart(out / "equity.png", f"{title}: cumulative return", lambda ax: _lines(ax, x, curves), percent=True, ts=ts),
        "drawdown": _chart(out / "drawdown.png", f"{title}: drawdown (net)",
                           lambda ax: ax.fill_between(x, perf.drawdown(returns), 0.0, color="tab:red", alpha=0.6), percent=True, ts=ts),
        "rolling_sharpe": _chart(out / "rolling_sharpe.png", f"{title}: rolling Sharpe, annualised ({window} bars ≈ {sessions:.0f} sessions)",
                                 lambda ax: (ax.plot(x, sharpe), ax.axhline(0.0, color="grey", lw=0.8)), ts=ts),
    }
    if ic_by_horizon:
        labels = [str(h) for h in ic_by_horizon]
        bands = _ic_bands(factor, ic_by_horizon)
        paths["ic_decay"] = _chart(out / "ic_decay.png", f"{title}: mean IC by horizon (bars)" + (", 95% band" if bands else ""),
                                   lambda ax: ax.bar(labels, list(ic_by_horizon.values()), yerr=bands, capsize=4))
    if factor and factor.get("quantile_bps"):
        horizon = factor.get("horizon")
        if horizon not in factor["quantile_bps"]:  # no model horizon given: the one that separates most
            horizon = max(factor["quantile_bps"], key=lambda h: abs(factor["spread_bps"][h]))
        bps = factor["quantile_bps"][horizon]
        paths["quantiles"] = _chart(out / "quantiles.png", f"{title}: mean {horizon}-bar forward return by score quantile (bps)",
                                    lambda ax: ax.bar([str(q + 1) for q in range(len(bps))], bps,
                                                      color=["tab:red" if b < 0 else "tab:green" for b in bps]))
    bench = None if benchmark is None else (benchmark_label, np.nan_to_num(np.asarray(benchmark, dtype=np.float64)))
    paths["summary"] = out / "summary.md"
    images = [p.name for p in paths.values() if p.suffix == ".png"]
    rigour = research.rigour_summary(returns, periods_per_year=periods_per_year, ic_series=ic_series,
                                     trials=dict(trials) if trials else None)
    paths["summary"].write_text(_summary(result, periods_per_year, title, ic_by_horizon, images, bench, rigour, factor,
                                         parameter_walk_forward, search=search, cpcv=cpcv))
    return paths


def default_rolling_window(n_bars: int, periods_per_year: int) -> int:
    """Bars in the rolling Sharpe window: whole sessions, about a sixth of the series, at most a quarter of a year.

    Example:
        >>> default_rolling_window(1859, 6552)  # 71 sessions of 15-minute bars → 11 sessions
        286
        >>> default_rolling_window(4, 252)
        2
    """
    per_session = max(periods_per_year // _SESSIONS_PER_YEAR, 1)
    sessions = min(max((n_bars // per_session) // 6, 1), _SESSIONS_PER_YEAR // 4)
    return int(min(max(sessions * per_session, 2), max(n_bars, 2)))


def gross_returns(result: BacktestResult) -> np.ndarray:
    """Per-bar returns with every cost paid so far added back to the equity (what the book made before costs)."""
    paid = np.cumsum(result.equity["cost"].to_numpy())
    gross = result.equity["equity"].to_numpy() + paid
    before = np.concatenate(([result.initial_cash], gross[:-1]))
    return gross / before - 1.0


def equal_weight_returns(bars: pl.DataFrame, times: pl.Series) -> np.ndarray:
    """The equal-weight universe's simple return on each of ``times``: the mean close-to-close return of the symbols.

    ``bars`` has ``symbol, ts, close`` (``ts`` on the same clock as ``times``); a symbol counts on a
    timestamp when it has a bar there and on the one before. Timestamps without any such bar get 0.

    Example:
        >>> bars = pl.DataFrame({"symbol": ["A", "A", "B", "B"], "ts": [0, 1, 0, 1], "close": [10.0, 11.0, 20.0, 19.0]})
        >>> equal_weight_returns(bars, pl.Series([0, 1])).round(4).tolist()
        [0.0, 0.025]
    """
    per_symbol = (bars.sort("symbol", "ts")
                  .with_columns((pl.col("close") / pl.col("close").shift(1).over("symbol") - 1.0).alias("r"))
                  .group_by("ts").agg(pl.col("r").drop_nulls().drop_nans().mean()))
    aligned = pl.DataFrame({"ts": times}).join(per_symbol, on="ts", how="left")
    return aligned["r"].fill_null(0.0).fill_nan(0.0).to_numpy()


def embedded_summary(paths: Mapping[str, Path]) -> str:
    """``summary.md`` with each chart it links inlined as a base64 ``data:`` URI (self-contained markdown)."""
    summary = Path(paths["summary"])

    def inline(match: re.Match[str]) -> str:
        image = summary.parent / match.group(2)
        if not image.exists():
            return match.group(0)
        return f"![{match.group(1)}](data:image/png;base64,{base64.b64encode(image.read_bytes()).decode()})"

    return re.sub(r"!\[([^\]]*)\]\(([^)/]+\.png)\)", inline, summary.read_text())


def _cumulative(returns: np.ndarray) -> np.ndarray:
    return np.cumprod(1.0 + np.nan_to_num(returns)) - 1.0


def _rolling_sharpe(returns: np.ndarray, window: int, periods_per_year: int) -> np.ndarray:
    r = pl.Series(returns)
    return (r.rolling_mean(window) / r.rolling_std(window) * math.sqrt(periods_per_year)).to_numpy()


def _lines(ax: Axes, ts: np.ndarray, curves: Mapping[str, np.ndarray]) -> None:
    styles = {0: {"lw": 1.4}, 1: {"lw": 1.0, "ls": "--"}, 2: {"lw": 1.0, "color": "grey"}}
    for i, (label, curve) in enumerate(curves.items()):
        ax.plot(ts, curve, label=label, **styles.get(i, {}))
    ax.axhline(0.0, color="black", lw=0.6)
    ax.legend(loc="upper left", fontsize=8, frameon=False)


def _chart(path: Path, title: str, draw: Callable[[Axes], object], *, percent: bool = False, ts: np.ndarray | None = None) -> Path:
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    draw(ax)
    if ts is not None:
        _date_ticks(ax, ts)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=80)
    return path


def _date_ticks(ax: Axes, ts: np.ndarray, most: int = 8) -> None:
    """Label a bar-numbered x axis with the date of the first bar of (at most ``most``) evenly spaced days."""
    if ts.size == 0 or not np.issubdtype(ts.dtype, np.datetime64):
        return
    days = ts.astype("datetime64[D]")
    starts = np.flatnonzero(np.concatenate(([True], days[1:] != days[:-1])))
    picked = starts[:: max(1, math.ceil(starts.size / most))]
    fmt = "%Y-%m-%d" if days[0].astype(object).year != days[-1].astype(object).year else "%m-%d"
    ax.set_xticks(picked, [days[i].astype(object).strftime(fmt) for i in picked])
    ax.set_xlim(0, max(ts.size - 1, 1))


def _ic_bands(factor: Mapping[str, Any] | None, ic: Mapping[int | str, float]) -> list[list[float]] | None:
    """Error-bar lengths (below, above) of each horizon's mean IC from the factor report's 95% band."""
    bands = (factor or {}).get("ic", {})
    if not bands or any(int(h) not in bands for h in ic):
        return None
    rows = [bands[int(h)] for h in ic]
    return [[max(r["ic"] - r["low"], 0.0) for r in rows], [max(r["high"] - r["ic"], 0.0) for r in rows]]


def _walk_forward_lines(name: str, wf: Any) -> list[str]:
    """A parameter chosen block by block on the earlier blocks, against each value held fixed (same blocks)."""
    fixed = " | ".join(f"{format_metric('sharpe', v)}" for v in wf.fixed.values())
    return ["## Parameter walk-forward", "",
            f"{name}: chosen on each block from the Sharpe of the blocks before it ({len(wf.chosen)} blocks after the first: "
            + ", ".join(str(c) for c in wf.chosen) + ").", "",
            "| walk-forward choice | " + " | ".join(f"fixed {p}" for p in wf.fixed) + " |",
            "|---:|" + "---:|" * len(wf.fixed),
            f"| {format_metric('sharpe', wf.sharpe)} | {fixed} |", *_sweep_lines(name, getattr(wf, "sweep", None))]


def _sweep_lines(name: str, s: Mapping[str, Any] | None) -> list[str]:
    """Picking the value with the best Sharpe over the whole window instead: its deflated Sharpe ratio and PBO."""
    if not s or "dsr" not in s:
        return []
    pbo = f", probability of backtest overfitting {format_metric('pbo', s['pbo'])} (CSCV, {s['pbo_blocks']} blocks)" if "pbo" in s else ""
    return ["", f"Picking the {name} with the best Sharpe over the whole window ({s['best']}, {format_metric('sharpe', s['sharpe'])} "
                f"of {s['n_trials']} values): deflated Sharpe ratio {format_metric('dsr', s['dsr'])}{pbo}."]


def _factor_lines(factor: Mapping[str, Any]) -> list[str]:
    """IC by horizon with its 95% band, mean forward return by score quantile, and quantile turnover."""
    q = factor["quantiles"]
    lines = ["## The score as a factor (out of sample)", "",
             "| horizon (bars) | mean IC | 95% band | " + " | ".join(f"Q{i + 1} (bps)" for i in range(q)) + " | Q" + str(q) + " − Q1 |",
             "|---|---:|---|" + "---:|" * (q + 1)]
    for h, band in factor["ic"].items():
        bps = factor["quantile_bps"].get(h, [])
        cells = " | ".join(f"{b:+.2f}" for b in bps) if len(bps) == q else " | ".join("n/a" for _ in range(q))
        lines.append(f"| {h} | {band['ic']:.4f} | [{band['low']:.4f}, {band['high']:.4f}] | {cells} | {factor['spread_bps'][h]:+.2f} |")
    lines += ["", f"Quantile turnover between consecutive timestamps: top {factor['turnover_top']:.1%}, "
                  f"bottom {factor['turnover_bottom']:.1%}."]
    return lines


def _summary(result: BacktestResult, periods_per_year: int, title: str, ic: Mapping[int | str, float] | None,
             images: list[str], benchmark: tuple[str, np.ndarray] | None, rigour: Mapping[str, float | int],
             factor: Mapping[str, Any] | None = None, walk_forward: tuple[str, Any] | None = None, *,
             search: Mapping[str, Mapping[str, Any]] | None = None, cpcv: Mapping[str, Any] | None = None) -> str:
    metrics = result.metrics(periods_per_year)
    gross = perf.summary(gross_returns(result), periods_per_year=periods_per_year)
    eq = result.equity["equity"]
    columns = ["net", "gross"]
    rows = {name: [value, gross.get(name)] for name, value in metrics.items()}
    if benchmark is not None:
        label, bench = benchmark
        columns.append(label)
        bench_metrics = perf.summary(bench, periods_per_year=periods_per_year)
        for name in rows:
            rows[name].append(bench_metrics.get(name))
    lines = [
        f"# {title}",
        "",
        f"{result.equity.height:,} bars from {result.equity['ts'][0]} to {result.equity['ts'][-1]}; "
        f"equity {result.initial_cash:,.2f} → {eq[-1]:,.2f}; {result.trades.height:,} trades; {periods_per_year:,} bars a year.",
        "",
        "| metric | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
        *(f"| {name} | " + " | ".join(format_metric(name, v) for v in values) + " |" for name, values in rows.items()),
    ]
    lines += ["", *_trade_lines(result.trade_stats())]
    if factor:
        lines += ["", *_factor_lines(factor)]
    elif ic:
        lines += ["", "| horizon (bars) | mean IC |", "|---|---:|", *(f"| {h} | {v:.4f} |" for h, v in ic.items())]
    lines += ["", *_rigour_lines(rigour, search)]
    if walk_forward:
        lines += ["", *_walk_forward_lines(*walk_forward)]
    if cpcv:
        from models.cpcv import markdown_lines

        lines += ["", *markdown_lines(cpcv)]
    lines += ["", *(f"![{Path(name).stem}]({name})" for name in images), ""]
    return "\n".join(lines)


def _trade_lines(t: Mapping[str, float]) -> list[str]:
    """The round-trip table (:meth:`models.backtest.BacktestResult.trade_stats`): each position from flat to flat."""
    def money(x: float) -> str:
        return "n/a" if not np.isfinite(x) else f"{x:,.2f}"

    factor = "n/a" if np.isnan(t["profit_factor"]) else ("∞" if np.isinf(t["profit_factor"]) else f"{t['profit_factor']:.2f}")
    pct = "n/a" if np.isnan(t["win_rate"]) else f"{t['win_rate']:.1%}"
    held = "n/a" if np.isnan(t["avg_bars_held"]) else f"{t['avg_bars_held']:.1f}"
    return ["## Round trips", "",
            "| round trips (open) | win rate | profit factor | average trade | average win | average loss | bars held | time in market |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {int(t['round_trips']):,} ({int(t['open_trips'])}) | {pct} | {factor} | {money(t['avg_trade'])} | "
            f"{money(t['avg_win'])} | {money(t['avg_loss'])} | {held} | {t['exposure_time']:.1%} |"]


def _rigour_lines(r: Mapping[str, float | int], search: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """The research-rigour table (:func:`models.research.rigour_summary`), and each parameter search's pick."""
    rows = [("Sharpe (annualised), 95% CI, block bootstrap",
             f"{format_metric('sharpe', r['sharpe'])} [{format_metric('sharpe', r['sharpe_ci_low'])}, "
             f"{format_metric('sharpe', r['sharpe_ci_high'])}]"),
            ("probabilistic Sharpe ratio (P[true Sharpe > 0])", format_metric("psr", r["psr"]))]
    if "mean_ic" in r:
        rows.append(("mean IC, 95% CI, block bootstrap",
                     f"{r['mean_ic']:.4f} [{r['ic_ci_low']:.4f}, {r['ic_ci_high']:.4f}]"))
    if "dsr" in r:
        rows.append((f"deflated Sharpe ratio ({r['n_trials']} trials; best of them by luck: Sharpe "
                     f"{format_metric('sharpe', r['dsr_benchmark_sharpe'])})", format_metric("dsr", r["dsr"])))
    if "pbo" in r:
        rows.append((f"probability of backtest overfitting (CSCV, {r['pbo_blocks']} blocks)", format_metric("pbo", r["pbo"])))
    for family, s in (search or {}).items():
        if "dsr" in s:
            rows.append((f"{family} parameter search: deflated Sharpe ratio of the best of {s['n_trials']} trials (gross long-short "
                         f"Sharpe {format_metric('sharpe', s['sharpe'])}; best of them by luck {format_metric('sharpe', s['dsr_benchmark_sharpe'])})",
                         format_metric("dsr", s["dsr"])))
        if "pbo" in s:
            rows.append((f"{family} parameter search: PBO across its trials (CSCV, {s['pbo_blocks']} blocks)", format_metric("pbo", s["pbo"])))
    return ["## Research rigour", "", "| statistic | value |", "|---|---:|", *(f"| {k} | {v} |" for k, v in rows)]


def format_metric(name: str, value: float | int | None) -> str:
    """One metric for a table: percentages for returns and shares, 2 decimals for ratios, thousands separators.

    Example:
        >>> format_metric("max_drawdown", -0.01234), format_metric("sharpe_ratio", 1.23456), format_metric("trades", 1234)
        ('-1.23%', '1.23', '1,234')
    """
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a" if math.isnan(value) else ("∞" if value > 0 else "-∞")
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if name in PERCENT_METRICS:
        return f"{value:.2%}"
    return f"{value:,.2f}" if abs(value) >= 0.1 or name.startswith("total_") else f"{value:.4f}"
