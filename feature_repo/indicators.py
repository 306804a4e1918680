"""Textbook technical indicators as polars expressions over one symbol's bars in time order.

Every function returns an expression to be evaluated *per symbol* (the library wraps
it in ``.over("symbol")``) on a frame sorted by time. Each docstring states the
definition it implements; the tests check each one against values worked out by
hand from that definition. Values that the definition leaves undefined (a window not
yet full, a zero range) are null, never an invented number.

Example:
    >>> import polars as pl
    >>> df = pl.DataFrame({"close": [1.0, 2.0, 3.0, 4.0]})
    >>> df.select(sma(pl.col("close"), 2)).to_series().to_list()
    [None, 1.5, 2.5, 3.5]
"""

from __future__ import annotations

import math

import polars as pl

LN2 = math.log(2.0)


def _safe_div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """``num / den``, null where ``den`` is zero (an undefined ratio is not a number we invent)."""
    return pl.when(den != 0).then(num / den).otherwise(None)


def sma(x: pl.Expr, n: int) -> pl.Expr:
    """Simple moving average: mean of the last ``n`` values (null until ``n`` are available)."""
    return x.rolling_mean(n, min_samples=n)


def seeded_ema(x: pl.Expr, n: int, alpha: float) -> pl.Expr:
    """Exponential smoothing seeded with the simple mean of the first ``n`` values.

    ``s_k = mean(x_1..x_n)`` at the ``n``-th available value ``k``, then
    ``s_t = s_{t-1} + alpha * (x_t - s_{t-1})``. Leading nulls (e.g. the first change of
    a series) are skipped; the smoothed value is null before the seed.
    """
    seen = x.is_not_null().cast(pl.Int64).cum_sum()
    # before the n-th value the n-row mean is null (fewer than n values so far), at it the mean is the seed:
    # one comparison of the running count (polars evaluates each mention of it again)
    seeded = pl.when(seen > n).then(x).otherwise(x.rolling_mean(n, min_samples=n))
    # NaN in gives NaN out, as in every other indicator (compute_features turns it into null). No
    # fill_nan here: polars expands it to three copies of its input, and nested smoothings
    # (MACD's signal, ADX) multiply that, which made it the library's most expensive step.
    return seeded.ewm_mean(alpha=alpha, adjust=False, ignore_nulls=True)


def ema(x: pl.Expr, n: int) -> pl.Expr:
    """Exponential moving average with ``alpha = 2 / (n + 1)``, seeded with the SMA of the first ``n``."""
    return seeded_ema(x, n, 2.0 / (n + 1))


def wilder(x: pl.Expr, n: int) -> pl.Expr:
    """Wilder's smoothing: ``alpha = 1 / n``, seeded with the SMA of the first ``n`` values.

    ``s_t = (s_{t-1} * (n - 1) + x_t) / n`` — the average form of Wilder's running sum.
    """
    return seeded_ema(x, n, 1.0 / n)


def log_return(close: pl.Expr, n: int) -> pl.Expr:
    """Log return over ``n`` bars: ``ln(C_t / C_{t-n})``."""
    return (close / close.shift(n)).log()


def true_range(high: pl.Expr, low: pl.Expr, close: pl.Expr) -> pl.Expr:
    """Wilder's true range ``max(H - L, |H - C_{t-1}|, |L - C_{t-1}|)``; null on the first bar (no prior close)."""
    return true_range_from(high, low, close.shift(1))


def true_range_from(high: pl.Expr, low: pl.Expr, prev_close: pl.Expr) -> pl.Expr:
    """:func:`true_range` from the previous bar's close (a column: the formula reads it four times)."""
    tr = pl.max_horizontal(high - low, (high - prev_close).abs(), (low - prev_close).abs())
    return pl.when(prev_close.is_null()).then(None).otherwise(tr)


def atr(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int) -> pl.Expr:
    """Average true range: Wilder smoothing (SMA seed) of the true range over ``n`` bars."""
    return wilder(true_range(high, low, close), n)


def realized_vol(ret1: pl.Expr, n: int) -> pl.Expr:
    """Realised volatility: ``sqrt(sum of squared 1-bar log returns over the last n bars)`` (not annualised)."""
    return (ret1.pow(2).rolling_sum(n, min_samples=n)).sqrt()


def parkinson_vol(high: pl.Expr, low: pl.Expr, n: int) -> pl.Expr:
    """Parkinson (1980) range volatility: ``sqrt(sum ln(H/L)^2 / (4 n ln 2))`` over ``n`` bars."""
    return ((high / low).log().pow(2).rolling_sum(n, min_samples=n) / (4.0 * n * LN2)).sqrt()


def garman_klass_vol(open_: pl.Expr, high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int) -> pl.Expr:
    """Garman-Klass (1980): ``sqrt(mean over n bars of 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2)``."""
    term = 0.5 * (high / low).log().pow(2) - (2.0 * LN2 - 1.0) * (close / open_).log().pow(2)
    return term.rolling_mean(n, min_samples=n).clip(lower_bound=0.0).sqrt()


def rsi(close: pl.Expr, n: int) -> pl.Expr:
    """Wilder's RSI: ``100 - 100 / (1 + avg_gain / avg_loss)``.

    Gains and losses are the positive and negative parts of ``C_t - C_{t-1}``, each
    Wilder-smoothed over ``n`` changes (seed: mean of the first ``n`` changes). An
    average loss of zero gives 100; no movement at all (both zero) is undefined (null).
    """
    gain, loss = rsi_averages(close.diff(), n)
    return rsi_from(gain, loss)


def rsi_averages(change: pl.Expr, n: int) -> tuple[pl.Expr, pl.Expr]:
    """:func:`rsi`'s Wilder-smoothed average gain and loss from the close's 1-bar change."""
    return wilder(change.clip(lower_bound=0.0), n), wilder((-change).clip(lower_bound=0.0), n)


def rsi_from(gain: pl.Expr, loss: pl.Expr) -> pl.Expr:
    """:func:`rsi` from the average gain and loss (columns: the formula reads each three times)."""
    return pl.when((gain + loss) == 0).then(None).otherwise(100.0 * gain / (gain + loss))


def macd(close: pl.Expr, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Appel's MACD: line ``EMA_fast(C) - EMA_slow(C)``, signal ``EMA_signal(line)``, histogram ``line - signal``.

    All three are divided by the close so that symbols at different price levels compare.
    """
    return macd_from(ema(close, fast) - ema(close, slow), close, signal)


def macd_from(line: pl.Expr, close: pl.Expr, signal: int = 9) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """:func:`macd` from an already computed MACD line (the library passes a column, computed once)."""
    return macd_ratios(line, ema(line, signal), close)


def macd_ratios(line: pl.Expr, sig: pl.Expr, close: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """:func:`macd`'s line, signal and histogram over the close, from the line and its signal EMA."""
    return line / close, sig / close, (line - sig) / close


def stochastic(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int = 14, d: int = 3) -> tuple[pl.Expr, pl.Expr]:
    """Lane's stochastic: ``%K = 100 (C - LL_n) / (HH_n - LL_n)``, ``%D = SMA_d(%K)``; null on a zero range."""
    k = stochastic_k(close, high.rolling_max(n, min_samples=n), low.rolling_min(n, min_samples=n))
    return k, sma(k, d)


def stochastic_k(close: pl.Expr, hh: pl.Expr, ll: pl.Expr) -> pl.Expr:
    """``%K = 100 (C - LL) / (HH - LL)`` from the window's highest high and lowest low."""
    return 100.0 * _safe_div(close - ll, hh - ll)


def williams_r(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int = 14) -> pl.Expr:
    """Williams %R: ``-100 (HH_n - C) / (HH_n - LL_n)``, in [-100, 0]; null on a zero range."""
    return williams_r_from(close, high.rolling_max(n, min_samples=n), low.rolling_min(n, min_samples=n))


def williams_r_from(close: pl.Expr, hh: pl.Expr, ll: pl.Expr) -> pl.Expr:
    """``-100 (HH - C) / (HH - LL)`` from the window's highest high and lowest low."""
    return -100.0 * _safe_div(hh - close, hh - ll)


def cci(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int = 20) -> pl.Expr:
    """Lambert's CCI: ``(TP - SMA_n(TP)) / (0.015 * MD)``, ``TP = (H + L + C) / 3``.

    ``MD`` is the mean absolute deviation of the last ``n`` typical prices from the
    current ``SMA_n(TP)``.
    """
    tp = typical_price(high, low, close)
    return cci_from(tp, sma(tp, n), n)


def typical_price(high: pl.Expr, low: pl.Expr, close: pl.Expr) -> pl.Expr:
    """``TP = (H + L + C) / 3``."""
    return (high + low + close) / 3.0


def cci_from(tp: pl.Expr, mean: pl.Expr, n: int) -> pl.Expr:
    """:func:`cci` from the typical price and its ``SMA_n`` (columns: the deviation sum reads them ``n`` times)."""
    md = pl.sum_horizontal([(tp.shift(j) - mean).abs() for j in range(n)]) / n
    return _safe_div(tp - mean, 0.015 * md)


def roc(close: pl.Expr, n: int) -> pl.Expr:
    """Rate of change: ``100 (C_t / C_{t-n} - 1)``."""
    return 100.0 * (close / close.shift(n) - 1.0)


def directional_movement(high: pl.Expr, low: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """Wilder's ``+DM`` and ``-DM``.

    ``+DM = H_t - H_{t-1}`` when that exceeds ``L_{t-1} - L_t`` and is positive, else 0;
    ``-DM = L_{t-1} - L_t`` when that exceeds ``H_t - H_{t-1}`` and is positive, else 0.
    """
    return directional_movement_from(high.diff(), -low.diff())


def directional_movement_from(up: pl.Expr, down: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """:func:`directional_movement` from the up move ``H_t - H_{t-1}`` and the down move ``L_{t-1} - L_t``."""
    plus_dm = pl.when(up.is_null()).then(None).when((up > down) & (up > 0)).then(up).otherwise(0.0)
    minus_dm = pl.when(down.is_null()).then(None).when((down > up) & (down > 0)).then(down).otherwise(0.0)
    return plus_dm, minus_dm


def dx(plus_dm: pl.Expr, minus_dm: pl.Expr, tr: pl.Expr, n: int) -> pl.Expr:
    """Wilder's directional index ``DX = 100 |+DI - -DI| / (+DI + -DI)``.

    ``+DI = 100 W(+DM) / W(TR)`` and ``-DI = 100 W(-DM) / W(TR)``, ``W`` Wilder's smoothing over ``n``.
    """
    return dx_from(wilder(plus_dm, n), wilder(minus_dm, n), wilder(tr, n))


def dx_from(smoothed_plus_dm: pl.Expr, smoothed_minus_dm: pl.Expr, smoothed_tr: pl.Expr) -> pl.Expr:
    """:func:`dx` from the Wilder-smoothed ``+DM``, ``-DM`` and TR (columns: the formula reads each several times)."""
    plus_di = 100.0 * _safe_div(smoothed_plus_dm, smoothed_tr)
    minus_di = 100.0 * _safe_div(smoothed_minus_dm, smoothed_tr)
    return 100.0 * _safe_div((plus_di - minus_di).abs(), plus_di + minus_di)


def adx_stages(high: pl.Expr, low: pl.Expr, close: pl.Expr, n: int = 14) -> list[dict[str, pl.Expr]]:
    """Wilder's ADX = ``W(DX)`` over ``n`` (seed: mean of the first ``n`` DX values), as four column stages.

    Nesting Wilder smoothings in one polars expression repeats each input at every
    level (DX reads each smoothed input several times), so the library evaluates the
    stages one ``with_columns`` at a time: ``_pdm, _mdm, _tr`` → their smoothings
    ``_wpdm, _wmdm, _wtr`` → ``_dx`` (element-wise) → ``adx``.
    """
    plus_dm, minus_dm = directional_movement(high, low)
    col = pl.col
    return [
        {"_pdm": plus_dm, "_mdm": minus_dm, "_tr": true_range(high, low, close)},
        {"_wpdm": wilder(col("_pdm"), n), "_wmdm": wilder(col("_mdm"), n), "_wtr": wilder(col("_tr"), n)},
        {"_dx": dx_from(col("_wpdm"), col("_wmdm"), col("_wtr"))},
        {"adx": wilder(col("_dx"), n)},
    ]


def bollinger(close: pl.Expr, n: int = 20, k: float = 2.0) -> tuple[pl.Expr, pl.Expr]:
    """Bollinger bands ``SMA_n(C) ± k σ_n`` (population σ): ``%B = (C - lower) / (upper - lower)``, bandwidth ``(upper - lower) / SMA_n``."""
    return bollinger_from(close, sma(close, n), close.rolling_std(n, min_samples=n, ddof=0), k)


def bollinger_from(close: pl.Expr, mid: pl.Expr, sd: pl.Expr, k: float = 2.0) -> tuple[pl.Expr, pl.Expr]:
    """:func:`bollinger` from the band's middle (``SMA_n``) and population σ."""
    upper, lower = mid + k * sd, mid - k * sd
    return _safe_div(close - lower, upper - lower), _safe_div(upper - lower, mid)


def obv(close: pl.Expr, volume: pl.Expr) -> pl.Expr:
    """On-balance volume: running sum of ``sign(C_t - C_{t-1}) * V_t`` (0 on the first bar)."""
    return (close.diff().sign().fill_null(0.0) * volume).cum_sum()


def slope(y: pl.Expr, n: int) -> pl.Expr:
    """Least-squares slope of ``y`` on the bar index over the last ``n`` bars (per bar)."""
    xbar = (n - 1) / 2.0
    sxx = sum((i - xbar) ** 2 for i in range(n))
    # y_{t-j} sits at index n-1-j of the window
    fitted = pl.sum_horizontal([((n - 1 - j) - xbar) / sxx * y.shift(j) for j in range(n)])
    return pl.when(y.shift(n - 1).is_null()).then(None).otherwise(fitted)


def mfi(high: pl.Expr, low: pl.Expr, close: pl.Expr, volume: pl.Expr, n: int = 14) -> pl.Expr:
    """Money flow index: ``100 * PMF_n / (PMF_n + NMF_n)``.

    Raw money flow ``TP * V`` (``TP = (H + L + C) / 3``) counts as positive when TP rose
    from the previous bar, negative when it fell; sums over the last ``n`` bars (the first
    bar has no previous TP, so the first MFI is at bar ``n + 1``).
    """
    pos, neg = money_flows(typical_price(high, low, close), volume, n)
    return mfi_from(pos, neg)


def money_flows(tp: pl.Expr, volume: pl.Expr, n: int) -> tuple[pl.Expr, pl.Expr]:
    """:func:`mfi`'s positive and negative money flow over ``n`` bars from the typical price and volume."""
    change = tp.diff()
    flow = tp * volume
    pos = pl.when(change > 0).then(flow).when(change.is_null()).then(None).otherwise(0.0).rolling_sum(n, min_samples=n)
    neg = pl.when(change < 0).then(flow).when(change.is_null()).then(None).otherwise(0.0).rolling_sum(n, min_samples=n)
    return pos, neg


def mfi_from(pos: pl.Expr, neg: pl.Expr) -> pl.Expr:
    """:func:`mfi` from the positive and negative money flows (columns: the formula reads each twice)."""
    return 100.0 * _safe_div(pos, pos + neg)
