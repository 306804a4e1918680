"""The feature library against values worked out by hand from each indicator's textbook definition.

Every expected number here is derived in the test itself: either literal arithmetic on a
short fixed series (with the working in comments) or a plain-Python loop written from the
definition (``ref_*`` below: one value at a time, no polars, no vectorised shortcuts). The
indicators are evaluated on one symbol with ``df.select(expr)``; the library wiring
(windows, names, sessions, the cross-section, warm-up) through ``compute_features``.
"""

from __future__ import annotations

import datetime as dt
import math
import random

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from feature_repo import FEATURES, FeatureInputError, compute_features, compute_labels
from feature_repo import indicators as ind
from feature_repo.library import BAR_COLUMNS, WARMUP_BARS

REL, ABS = 1e-9, 1e-12
BAR = dt.timedelta(minutes=15)
UTC = dt.UTC
OP, H, L, C, V = (pl.col(x) for x in ("open", "high", "low", "close", "volume"))

# --- the fixed 10-bar series most tests use -----------------------------------------------
#        open  high  low   close volume
OHLCV = [
    (10.0, 10.5, 9.5, 10.0, 100.0),  # 0
    (10.0, 11.2, 9.8, 11.0, 200.0),  # 1
    (11.0, 11.5, 10.2, 10.5, 150.0),  # 2
    (10.5, 11.8, 10.4, 11.5, 300.0),  # 3
    (11.5, 12.3, 11.1, 12.0, 250.0),  # 4
    (12.0, 12.1, 10.8, 11.0, 400.0),  # 5
    (11.0, 11.9, 10.9, 11.5, 100.0),  # 6
    (11.5, 12.6, 11.4, 12.5, 200.0),  # 7
    (13.5, 14.0, 13.4, 13.8, 350.0),  # 8: gap up (true range from the previous close)
    (12.0, 12.2, 11.6, 12.0, 500.0),  # 9: gap down
]
OPEN, HIGH, LOW, CLOSE, VOLUME = (list(col) for col in zip(*OHLCV, strict=True))
# true ranges max(H-L, |H-C_prev|, |L-C_prev|), worked out bar by bar:
#   1: max(1.4, 1.2, 0.2)=1.4   2: max(1.3, 0.5, 0.8)=1.3   3: max(1.4, 1.3, 0.1)=1.4
#   4: max(1.2, 0.8, 0.4)=1.2   5: max(1.3, 0.1, 1.2)=1.3   6: max(1.0, 0.9, 0.1)=1.0
#   7: max(1.2, 1.1, 0.1)=1.2   8: max(0.6, 1.5, 0.9)=1.5   9: max(0.6, 1.6, 2.2)=2.2
TR = [None, 1.4, 1.3, 1.4, 1.2, 1.3, 1.0, 1.2, 1.5, 2.2]


def ohlcv_frame(rows: list[tuple[float, ...]] = OHLCV) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["open", "high", "low", "close", "volume"], orient="row")


def ev(expr: pl.Expr, df: pl.DataFrame | None = None) -> list[float | None]:
    return (ohlcv_frame() if df is None else df).select(expr).to_series().to_list()


def assert_values(got: list, expected: list, what: str = "") -> None:
    """Same length, nulls exactly where expected (never NaN), numbers within 1e-9 relative."""
    assert len(got) == len(expected), what
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if e is None:
            assert g is None, f"{what} row {i}: expected null, got {g}"
        else:
            assert g is not None and not math.isnan(g), f"{what} row {i}: expected {e}, got {g}"
            assert g == pytest.approx(e, rel=REL, abs=ABS), f"{what} row {i}"


# --- plain-Python references written from the definitions ----------------------------------


def ref_window(xs: list, n: int, f) -> list:
    """``f(last n values)`` once n values exist (and none is missing), else None."""
    out = []
    for t in range(len(xs)):
        w = xs[t - n + 1 : t + 1] if t >= n - 1 else None
        out.append(None if w is None or any(x is None for x in w) else f(w))
    return out


def ref_sma(xs: list, n: int) -> list:
    return ref_window(xs, n, lambda w: sum(w) / n)


def ref_ema(xs: list, n: int, alpha: float | None = None) -> list:
    """EMA seeded with the mean of the first n available values; leading Nones skipped."""
    a = 2.0 / (n + 1) if alpha is None else alpha
    out, first, s = [], [], None
    for x in xs:
        if x is None:
            out.append(None)
            continue
        if s is None:
            first.append(x)
            if len(first) == n:
                s = sum(first) / n
        else:
            s = s + a * (x - s)
        out.append(s)
    return out


def ref_wilder(xs: list, n: int) -> list:
    """Wilder's smoothing in its textbook form ``s = (s_prev * (n - 1) + x) / n``, seeded with the SMA."""
    out, first, s = [], [], None
    for x in xs:
        if x is None:
            out.append(None)
            continue
        if s is None:
            first.append(x)
            if len(first) == n:
                s = sum(first) / n
        else:
            s = (s * (n - 1) + x) / n
        out.append(s)
    return out


def lag(xs: list, k: int) -> list:
    return [None] * k + xs[: len(xs) - k]


def ref_log_return(c: list, n: int) -> list:
    return [None if p is None else math.log(x / p) for x, p in zip(c, lag(c, n), strict=True)]


def ref_true_range(h: list, lo: list, c: list) -> list:
    out = [None]
    for t in range(1, len(c)):
        out.append(max(h[t] - lo[t], abs(h[t] - c[t - 1]), abs(lo[t] - c[t - 1])))
    return out


def ref_rsi(c: list, n: int) -> list:
    ch = [None] + [c[t] - c[t - 1] for t in range(1, len(c))]
    g = ref_wilder([None if d is None else max(d, 0.0) for d in ch], n)
    lo = ref_wilder([None if d is None else max(-d, 0.0) for d in ch], n)
    out = []
    for gain, loss in zip(g, lo, strict=True):
        if gain is None or gain + loss == 0:
            out.append(None)  # not smoothed yet, or no movement at all
        elif loss == 0:
            out.append(100.0)  # RS infinite
        else:
            out.append(100.0 - 100.0 / (1.0 + gain / loss))
    return out


def ref_macd(c: list, fast: int, slow: int, signal: int) -> tuple[list, list, list]:
    line = [None if a is None or b is None else a - b for a, b in zip(ref_ema(c, fast), ref_ema(c, slow), strict=True)]
    sig = ref_ema(line, signal)
    hist = [None if s is None else (x - s) / p for x, s, p in zip(line, sig, c, strict=True)]
    return ([None if x is None else x / p for x, p in zip(line, c, strict=True)],
            [None if s is None else s / p for s, p in zip(sig, c, strict=True)], hist)


def ref_hh_ll(h: list, lo: list, n: int) -> tuple[list, list]:
    return ref_window(h, n, max), ref_window(lo, n, min)


def ref_stoch_k(h: list, lo: list, c: list, n: int) -> list:
    hh, ll = ref_hh_ll(h, lo, n)
    return [None if a is None or a == b else 100.0 * (x - b) / (a - b) for a, b, x in zip(hh, ll, c, strict=True)]


def ref_williams(h: list, lo: list, c: list, n: int) -> list:
    hh, ll = ref_hh_ll(h, lo, n)
    return [None if a is None or a == b else -100.0 * (a - x) / (a - b) for a, b, x in zip(hh, ll, c, strict=True)]


def ref_cci(h: list, lo: list, c: list, n: int) -> list:
    tp = [(a + b + x) / 3.0 for a, b, x in zip(h, lo, c, strict=True)]

    def one(w: list) -> float | None:
        mean = sum(w) / n
        md = sum(abs(x - mean) for x in w) / n
        return None if md == 0 else (w[-1] - mean) / (0.015 * md)

    return ref_window(tp, n, one)


def ref_adx(h: list, lo: list, c: list, n: int) -> list:
    pdm, mdm = [None], [None]
    for t in range(1, len(h)):
        up, down = h[t] - h[t - 1], lo[t - 1] - lo[t]
        pdm.append(up if up > down and up > 0 else 0.0)
        mdm.append(down if down > up and down > 0 else 0.0)
    wtr, wp, wm = ref_wilder(ref_true_range(h, lo, c), n), ref_wilder(pdm, n), ref_wilder(mdm, n)
    dx = []
    for tr, p, m in zip(wtr, wp, wm, strict=True):
        if tr is None or tr == 0:
            dx.append(None)
            continue
        pdi, mdi = 100.0 * p / tr, 100.0 * m / tr
        dx.append(None if pdi + mdi == 0 else 100.0 * abs(pdi - mdi) / (pdi + mdi))
    return ref_wilder(dx, n)


def ref_bollinger(c: list, n: int, k: float) -> tuple[list, list]:
    pctb, width = [], []
    for w in ref_window(c, n, list):
        if w is None:
            pctb.append(None)
            width.append(None)
            continue
        mid = sum(w) / n
        sd = math.sqrt(sum((x - mid) ** 2 for x in w) / n)  # population sd
        upper, lower = mid + k * sd, mid - k * sd
        pctb.append(None if upper == lower else (w[-1] - lower) / (upper - lower))
        width.append((upper - lower) / mid)
    return pctb, width


def ref_obv(c: list, v: list) -> list:
    out = [0.0]
    for t in range(1, len(c)):
        step = v[t] if c[t] > c[t - 1] else -v[t] if c[t] < c[t - 1] else 0.0
        out.append(out[-1] + step)
    return out


def ref_lsq_slope(y: list, n: int) -> list:
    """Ordinary least squares of y on x = 0..n-1: ``(n Σxy - Σx Σy) / (n Σx² - (Σx)²)``."""
    def one(w: list) -> float:
        sx, sy = sum(range(n)), sum(w)
        sxy, sxx = sum(i * yi for i, yi in enumerate(w)), sum(i * i for i in range(n))
        return (n * sxy - sx * sy) / (n * sxx - sx * sx)

    return ref_window(y, n, one)


def ref_mfi(h: list, lo: list, c: list, v: list, n: int) -> list:
    tp = [(a + b + x) / 3.0 for a, b, x in zip(h, lo, c, strict=True)]
    out = [None] * len(c)
    for t in range(n, len(c)):
        pos = sum(tp[i] * v[i] for i in range(t - n + 1, t + 1) if tp[i] > tp[i - 1])
        neg = sum(tp[i] * v[i] for i in range(t - n + 1, t + 1) if tp[i] < tp[i - 1])
        out[t] = None if pos + neg == 0 else 100.0 * pos / (pos + neg)
    return out


# --- frames for compute_features -------------------------------------------------------------


def session_frame(symbol: str, rows: list[tuple[float, ...]], days: list[dt.date], per_session: list[int] | int, *,
                  sector: str = "TECH", close_at: dict[dt.date, dt.datetime] | None = None,
                  vwap: list[float | None] | None = None) -> pl.DataFrame:
    """Bars of one symbol: ``rows`` (OHLCV) laid out in order over sessions opening 14:30 UTC.

    A session closes after its bars (``per_session`` 15-minute bars) unless ``close_at``
    gives its close; ``close_ts = least(ts + 15 min, session close)``.
    """
    counts = per_session if isinstance(per_session, list) else [per_session] * len(days)
    out, it = [], iter(rows)
    for day, n in zip(days, counts, strict=True):
        s_open = dt.datetime.combine(day, dt.time(14, 30), UTC)
        s_close = (close_at or {}).get(day, s_open + n * BAR)
        for j in range(n):
            o, h, lo, c, v = next(it)
            ts = s_open + j * BAR
            out.append({"symbol": symbol, "sector": sector, "ts": ts, "close_ts": min(ts + BAR, s_close), "session": day,
                        "session_open": s_open, "session_close": s_close, "open": o, "high": h, "low": lo, "close": c,
                        "volume": v, "vwap": None if vwap is None else vwap[len(out)]})
    return pl.DataFrame(out, schema=BAR_COLUMNS)


def consecutive_days(n: int, start: dt.date = dt.date(2024, 1, 1)) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


def random_walk(n: int, seed: int, price: float = 50.0) -> list[tuple[float, ...]]:
    """A deterministic OHLCV random walk with high > max(open, close) and low < min(open, close)."""
    rng, rows, close = random.Random(seed), [], price
    for _ in range(n):
        o = close * math.exp(rng.gauss(0, 0.002))
        c = o * math.exp(rng.gauss(0, 0.01))
        h, lo = max(o, c) * (1 + rng.uniform(0.001, 0.01)), min(o, c) * (1 - rng.uniform(0.001, 0.01))
        rows.append((o, h, lo, c, float(rng.randint(1_000, 50_000))))
        close = c
    return rows


def features(*frames: pl.DataFrame) -> pl.DataFrame:
    return compute_features(pl.concat(frames), bar_length=BAR, created=dt.datetime(2030, 1, 1, tzinfo=UTC))


def col(df: pl.DataFrame, name: str, symbol: str = "AAA") -> list:
    return df.filter(pl.col("symbol") == symbol)[name].to_list()


# --- returns -------------------------------------------------------------------------------------


def test_log_return_over_1_and_4_bars_is_ln_of_the_price_ratio():
    c = [100.0, 110.0, 99.0, 121.0, 133.1, 121.0]
    df = pl.DataFrame({"close": c})
    # ln(110/100)=ln 1.1, ln(99/110)=ln 0.9, ln(121/99), ln(133.1/121)=ln 1.1, ln(121/133.1)=ln(1/1.1)
    assert_values(ev(ind.log_return(C, 1), df), [None, math.log(1.1), math.log(0.9), math.log(121 / 99), math.log(1.1), -math.log(1.1)])
    # 4 bars back: ln(133.1/100), ln(121/110)=ln 1.1
    assert_values(ev(ind.log_return(C, 4), df), [None, None, None, None, math.log(1.331), math.log(1.1)])


def test_library_return_features_match_ln_price_ratios():
    rows = [(x, x + 1, x - 1, x, 100.0) for x in [100.0, 110.0, 99.0, 121.0, 133.1, 121.0]]
    f = features(session_frame("AAA", rows, consecutive_days(1), 6))
    assert_values(col(f, "ret_log_1"), [None, math.log(1.1), math.log(0.9), math.log(121 / 99), math.log(1.1), -math.log(1.1)])
    assert_values(col(f, "ret_log_4"), [None] * 4 + [math.log(1.331), math.log(1.1)])
    assert_values(col(f, "ret_log_26"), [None] * 6)


def test_overnight_gap_and_intraday_return_use_the_session_open_and_previous_close():
    #              open   high   low    close
    rows = [(100.0, 102.0, 99.0, 101.0, 10.0), (101.0, 103.0, 100.0, 102.0, 10.0), (102.0, 104.0, 101.0, 103.0, 10.0),
            (105.0, 107.0, 104.0, 106.0, 10.0), (106.0, 108.0, 104.0, 104.0, 10.0), (104.0, 105.0, 98.0, 99.0, 10.0),
            (97.0, 98.0, 96.0, 97.5, 10.0), (97.5, 99.0, 97.0, 98.0, 10.0)]
    f = features(session_frame("AAA", rows, consecutive_days(3), [3, 3, 2]))
    # session 1 has no previous close: null, not 0; session 2 gaps from 103 to 105, session 3 from 99 to 97;
    # the gap is known from the session's first bar on and repeated on each of its bars
    g2, g3 = math.log(105 / 103), math.log(97 / 99)
    assert_values(col(f, "ret_overnight_1"), [None, None, None, g2, g2, g2, g3, g3])
    # since the session's first open: 101/100, 102/100, 103/100 | 106/105, 104/105, 99/105 | 97.5/97, 98/97
    assert_values(col(f, "ret_intraday_1"), [math.log(x) for x in (1.01, 1.02, 1.03, 106 / 105, 104 / 105, 99 / 105, 97.5 / 97, 98 / 97)])


# --- volatility ---------------------------------------------------------------------------------


def test_realized_vol_is_root_sum_of_squared_log_returns():
    r = [math.log(CLOSE[t] / CLOSE[t - 1]) for t in range(1, 10)]  # r[0] is bar 1's return
    # window 3: the first value needs returns of bars 1, 2, 3 (bar 0 has none)
    expected = [None, None, None] + [math.sqrt(r[t - 3] ** 2 + r[t - 2] ** 2 + r[t - 1] ** 2) for t in range(3, 10)]
    assert_values(ev(ind.realized_vol(ind.log_return(C, 1), 3)), expected)
    # bar 3 by hand: sqrt(ln(11/10)^2 + ln(10.5/11)^2 + ln(11.5/10.5)^2)
    assert expected[3] == pytest.approx(math.sqrt(math.log(1.1) ** 2 + math.log(10.5 / 11) ** 2 + math.log(11.5 / 10.5) ** 2), rel=REL)


def test_parkinson_vol_is_root_mean_squared_log_range_over_4_ln2():
    # bar 2: sqrt((ln(10.5/9.5)^2 + ln(11.2/9.8)^2 + ln(11.5/10.2)^2) / (4 * 3 * ln 2))
    bar2 = math.sqrt((math.log(10.5 / 9.5) ** 2 + math.log(11.2 / 9.8) ** 2 + math.log(11.5 / 10.2) ** 2) / (12 * math.log(2)))
    lr2 = [math.log(h / lo) ** 2 for h, lo in zip(HIGH, LOW, strict=True)]
    expected = [None, None] + [math.sqrt((lr2[t - 2] + lr2[t - 1] + lr2[t]) / (12 * math.log(2))) for t in range(2, 10)]
    assert expected[2] == pytest.approx(bar2, rel=REL)
    assert_values(ev(ind.parkinson_vol(H, L, 3)), expected)


def test_garman_klass_vol_combines_range_and_open_to_close():
    k = 2 * math.log(2) - 1

    def term(t: int) -> float:
        return 0.5 * math.log(HIGH[t] / LOW[t]) ** 2 - k * math.log(CLOSE[t] / OPEN[t]) ** 2

    # bar 0 closes at its open (ln(C/O) = 0); bar 1 ln(11/10); bar 2 ln(10.5/11)
    bar2 = math.sqrt((0.5 * math.log(10.5 / 9.5) ** 2 + 0.5 * math.log(11.2 / 9.8) ** 2 - k * math.log(1.1) ** 2
                      + 0.5 * math.log(11.5 / 10.2) ** 2 - k * math.log(10.5 / 11) ** 2) / 3)
    expected = [None, None] + [math.sqrt((term(t - 2) + term(t - 1) + term(t)) / 3) for t in range(2, 10)]
    assert expected[2] == pytest.approx(bar2, rel=REL)
    assert_values(ev(ind.garman_klass_vol(OP, H, L, C, 3)), expected)


def test_true_range_uses_previous_close_on_gaps_and_is_null_on_the_first_bar():
    assert_values(ev(ind.true_range(H, L, C)), TR)


def test_atr_is_wilder_smoothing_of_true_range_seeded_with_the_sma():
    a3 = (1.4 + 1.3 + 1.4) / 3  # seed: mean of the first 3 true ranges (bars 1-3)
    a4 = (a3 * 2 + 1.2) / 3  # then (ATR_prev * (n-1) + TR) / n
    a5 = (a4 * 2 + 1.3) / 3
    a6 = (a5 * 2 + 1.0) / 3
    a7 = (a6 * 2 + 1.2) / 3
    a8 = (a7 * 2 + 1.5) / 3
    a9 = (a8 * 2 + 2.2) / 3
    expected = [None, None, None, a3, a4, a5, a6, a7, a8, a9]
    assert_values(ev(ind.atr(H, L, C, 3)), expected)
    assert_values(ev(100.0 * ind.atr(H, L, C, 3) / C), [None if a is None else 100 * a / c for a, c in zip(expected, CLOSE, strict=True)])


# --- momentum -----------------------------------------------------------------------------------


def test_rsi_is_wilder_average_gain_over_gain_plus_loss():
    # changes: +1, -0.5, +1, +0.5, -1, +0.5, +1, +1.3, -1.8
    # bar 3 seed: gain (1 + 0 + 1)/3 = 2/3, loss (0 + 0.5 + 0)/3 = 1/6 -> RSI = 100 - 100/(1 + 4) = 80
    # bar 4 (+0.5): gain (2/3*2 + 0.5)/3 = 11/18, loss (1/6*2)/3 = 1/9 -> RS = 5.5 -> RSI = 1100/13
    # bar 5 (-1): gain (11/18*2)/3 = 11/27, loss (1/9*2 + 1)/3 = 11/27 -> RSI = 50
    got = ev(ind.rsi(C, 3))
    assert_values(got[:6], [None, None, None, 80.0, 1100 / 13, 50.0])
    assert_values(got, ref_rsi(CLOSE, 3))


def test_rsi_when_only_gains_is_100():
    df = pl.DataFrame({"close": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0]})
    assert_values(ev(ind.rsi(C, 3), df), [None, None, None, 100.0, 100.0, 100.0, 100.0])


def test_rsi_when_only_losses_is_0():
    df = pl.DataFrame({"close": [6.0, 5.0, 4.0, 3.0, 2.0]})
    assert_values(ev(ind.rsi(C, 3), df), [None, None, None, 0.0, 0.0])


def test_rsi_when_price_never_moves_is_null():
    df = pl.DataFrame({"close": [5.0] * 7})
    assert ev(ind.rsi(C, 3), df) == [None] * 7


def test_ema_is_seeded_with_the_sma_of_the_first_n_values():
    # n=3, alpha=0.5: seed (10 + 11 + 10.5)/3 = 10.5, then 10.5 + 0.5*(11.5-10.5) = 11, 11 + 0.5*(12-11) = 11.5,
    # 11.5 + 0.5*(11-11.5) = 11.25
    assert_values(ev(ind.ema(C, 3))[:6], [None, None, 10.5, 11.0, 11.5, 11.25])
    assert_values(ev(ind.ema(C, 3)), ref_ema(CLOSE, 3))
    assert_values(ev(ind.sma(C, 3))[:5], [None, None, 10.5, 11.0, 34.0 / 3])


def test_macd_line_signal_and_histogram_with_small_windows():
    line, signal, hist = ind.macd(C, fast=2, slow=3, signal=2)
    # EMA_2 (alpha 2/3): seed bar 1 = 10.5; bar 2: 10.5; bar 3: 10.5 + 2/3*1 = 67/6; bar 4: 67/6 + 2/3*(12 - 67/6) = 211/18
    # EMA_3 (alpha 1/2): seed bar 2 = 10.5; bar 3: 11; bar 4: 11.5
    # line: bar 2: 0; bar 3: 67/6 - 11 = 1/6; bar 4: 211/18 - 11.5 = 2/9
    # signal EMA_2 of the line: seed bar 3 = (0 + 1/6)/2 = 1/12; bar 4: 1/12 + 2/3*(2/9 - 1/12) = 19/108
    # histogram bar 4: 2/9 - 19/108 = 5/108; all divided by the close
    assert_values(ev(line)[:5], [None, None, 0.0, (1 / 6) / 11.5, (2 / 9) / 12.0])
    assert_values(ev(signal)[:5], [None, None, None, (1 / 12) / 11.5, (19 / 108) / 12.0])
    assert_values(ev(hist)[:5], [None, None, None, (1 / 6 - 1 / 12) / 11.5, (5 / 108) / 12.0])
    ref_line, ref_signal, ref_hist = ref_macd(CLOSE, 2, 3, 2)
    assert_values(ev(line), ref_line)
    assert_values(ev(signal), ref_signal)
    assert_values(ev(hist), ref_hist)


def test_stochastic_k_and_d_from_the_highest_high_and_lowest_low():
    k, d = ind.stochastic(H, L, C, n=3, d=2)
    # bar 2: HH 11.5, LL 9.5 -> 100*(10.5-9.5)/2 = 50; bar 3: HH 11.8, LL 9.8 -> 100*1.7/2 = 85
    # bar 4: HH 12.3, LL 10.2 -> 100*1.8/2.1 = 600/7
    assert_values(ev(k)[:5], [None, None, 50.0, 85.0, 600 / 7])
    assert_values(ev(d)[:5], [None, None, None, (50 + 85) / 2, (85 + 600 / 7) / 2])
    assert_values(ev(k), ref_stoch_k(HIGH, LOW, CLOSE, 3))
    assert_values(ev(d), ref_sma(ref_stoch_k(HIGH, LOW, CLOSE, 3), 2))


def test_stochastic_and_williams_when_range_is_zero_are_null():
    df = pl.DataFrame({"high": [5.0] * 4, "low": [5.0] * 4, "close": [5.0] * 4})
    assert ev(ind.stochastic(H, L, C, n=3, d=2)[0], df) == [None] * 4
    assert ev(ind.williams_r(H, L, C, n=3), df) == [None] * 4


def test_williams_r_is_minus_distance_from_the_high_over_the_range():
    # bar 2: -100*(11.5-10.5)/2 = -50; bar 3: -100*(11.8-11.5)/2 = -15; bar 4: -100*(12.3-12)/2.1 = -100/7
    assert_values(ev(ind.williams_r(H, L, C, 3))[:5], [None, None, -50.0, -15.0, -100 / 7])
    assert_values(ev(ind.williams_r(H, L, C, 3)), ref_williams(HIGH, LOW, CLOSE, 3))


def test_cci_uses_mean_absolute_deviation_of_typical_price():
    # TP (x 1/9): 90, 96, 96.6 -> mean 94.2/9; |dev| 4.2, 1.8, 2.4 -> MD 2.8/9; TP - mean 2.4/9
    # CCI = 2.4 / (0.015 * 2.8) = 400/7
    got = ev(ind.cci(H, L, C, 3))
    assert_values(got[:3], [None, None, 400 / 7])
    assert_values(got, ref_cci(HIGH, LOW, CLOSE, 3))


def test_roc_is_percent_change_over_n_bars():
    # bar 2: 100*(10.5/10 - 1) = 5; bar 3: 100*(11.5/11 - 1) = 100/22; bar 4: 100*(12/10.5 - 1) = 100/7
    assert_values(ev(ind.roc(C, 2))[:5], [None, None, 5.0, 100 / 22, 100 / 7])


# --- trend --------------------------------------------------------------------------------------


def test_adx_stages_with_n_3_match_wilder_by_hand():
    # +DM/-DM from H_t - H_{t-1} vs L_{t-1} - L_t: bars 1-4 up moves 0.7, 0.3, 0.3, 0.5 (no -DM); bar 5: -DM 0.3;
    # bar 6: neither; bar 7: +DM 0.7; bar 8: +DM 1.4; bar 9: -DM 1.8
    df = ohlcv_frame()
    for stage in ind.adx_stages(H, L, C, 3):
        df = df.with_columns(**stage)
    assert_values(df["_pdm"].to_list(), [None, 0.7, 0.3, 0.3, 0.5, 0.0, 0.0, 0.7, 1.4, 0.0])
    assert_values(df["_mdm"].to_list(), [None, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0, 1.8])
    # W(+DM): bar 3 seed 1.3/3, bar 4 (1.3/3*2 + 0.5)/3 = 4.1/9, bar 5 (4.1/9*2)/3 = 8.2/27; W(-DM): 0, 0, 0.3/3 = 0.1
    # DX = 100 |+DI - -DI| / (+DI + -DI) (W(TR) cancels): bars 3, 4: 100; bar 5: 100*(8.2 - 2.7)/(8.2 + 2.7) = 550/10.9
    dx5 = 550 / 10.9
    assert_values(df["_dx"].to_list()[:6], [None, None, None, 100.0, 100.0, dx5])
    # bar 6 has no movement: both W decay by 2/3, the ratio and so DX stay the same
    adx5 = (100 + 100 + dx5) / 3  # seed: mean of the first 3 DX
    adx6 = (adx5 * 2 + dx5) / 3
    assert_values(df["adx"].to_list()[:7], [None] * 5 + [adx5, adx6])
    assert_values(df["adx"].to_list(), ref_adx(HIGH, LOW, CLOSE, 3))


def test_directional_movement_when_both_moves_are_equal_is_zero():
    # inside-out bar: high +1 and low -1 -> neither exceeds the other: both 0 (Wilder)
    df = pl.DataFrame({"high": [10.0, 11.0], "low": [9.0, 8.0]})
    pdm, mdm = ind.directional_movement(H, L)
    assert ev(pdm, df) == [None, 0.0] and ev(mdm, df) == [None, 0.0]


# --- bands --------------------------------------------------------------------------------------


def test_bollinger_pctb_and_bandwidth_use_population_sd():
    pctb, width = ind.bollinger(C, n=3, k=2.0)
    # bar 2: closes 10, 11, 10.5 -> mid 10.5, population var (0.25 + 0.25 + 0)/3 = 1/6 -> C at mid: %B 0.5,
    #        bandwidth 4 sd / mid = 4/sqrt(6)/10.5
    # bar 3: closes 11, 10.5, 11.5 -> mid 11, var 1/6 -> %B = (0.5 + 2 sd)/(4 sd) = 0.5 + sqrt(6)/8
    sd = 1 / math.sqrt(6)
    assert_values(ev(pctb)[:4], [None, None, 0.5, 0.5 + math.sqrt(6) / 8])
    assert_values(ev(width)[:4], [None, None, 4 * sd / 10.5, 4 * sd / 11])
    ref_pctb, ref_width = ref_bollinger(CLOSE, 3, 2.0)
    assert_values(ev(pctb), ref_pctb)
    assert_values(ev(width), ref_width)


def test_bollinger_pctb_when_price_is_flat_is_null_and_bandwidth_zero():
    pctb, width = ind.bollinger(C, n=3)
    df = pl.DataFrame({"close": [7.0] * 4})
    assert ev(pctb, df) == [None] * 4
    assert_values(ev(width, df), [None, None, 0.0, 0.0])


# --- volume -------------------------------------------------------------------------------------


def test_obv_adds_volume_on_up_bars_and_subtracts_on_down_bars():
    # signs of the changes: +, -, +, +, -, +, +, +, -; OBV starts at 0
    obv = [0.0, 200.0, 50.0, 350.0, 600.0, 200.0, 300.0, 500.0, 850.0, 350.0]
    assert_values(ev(ind.obv(C, V)), obv)
    flat = pl.DataFrame({"close": [1.0, 1.0, 2.0], "volume": [5.0, 7.0, 9.0]})
    assert_values(ev(ind.obv(C, V), flat), [0.0, 0.0, 9.0])  # an unchanged close adds nothing


def test_obv_slope_is_the_least_squares_slope_over_the_window():
    obv = [0.0, 200.0, 50.0, 350.0, 600.0, 200.0, 300.0, 500.0, 850.0, 350.0]
    # with 3 points at x = 0, 1, 2 the least-squares slope is (y_2 - y_0) / 2
    assert_values(ev(ind.slope(ind.obv(C, V), 3)), [None, None] + [(obv[t] - obv[t - 2]) / 2 for t in range(2, 10)])
    assert_values(ev(ind.slope(ind.obv(C, V), 4)), ref_lsq_slope(obv, 4))
    # a straight line y = 3x + 1 has slope 3 in every full window
    line = pl.DataFrame({"y": [3.0 * x + 1 for x in range(8)]})
    assert_values(ev(ind.slope(pl.col("y"), 5), line), [None] * 4 + [3.0] * 4)


def test_mfi_splits_money_flow_by_the_typical_price_change():
    # TP: 10, 32/3, 32.2/3, 33.7/3, 35.4/3, 33.9/3, 34.3/3: up, up, up, up, down, up
    # bars 3 and 4: only positive flow in the window -> 100
    # bar 5: window 3..5: pos 33.7/3*300 + 35.4/3*250 = 3370 + 2950, neg 33.9/3*400 = 4520 -> 100*6320/10840
    # bar 6: window 4..6: pos 2950 + 34.3/3*100, neg 4520
    pos6 = 2950 + 34.3 / 3 * 100
    got = ev(ind.mfi(H, L, C, V, 3))
    assert_values(got[:7], [None, None, None, 100.0, 100.0, 100 * 6320 / 10840, 100 * pos6 / (pos6 + 4520)])
    assert_values(got, ref_mfi(HIGH, LOW, CLOSE, VOLUME, 3))


def test_vwap_distance_uses_the_session_vwap_so_far_and_typical_price_when_vwap_missing():
    rows = [(10.0, 11.0, 9.0, 10.0, 100.0), (10.0, 12.0, 10.0, 11.0, 300.0), (11.0, 12.0, 10.0, 10.5, 100.0),
            (12.0, 12.5, 11.5, 12.0, 200.0), (12.0, 12.3, 11.7, 12.2, 200.0)]
    vwap = [10.2, 10.8, None, 12.1, 12.0]  # bar 2 has no vwap: its typical price (12 + 10 + 10.5)/3 stands in
    f = features(session_frame("AAA", rows, consecutive_days(2), [3, 2], vwap=vwap))
    s1 = [10.2 * 100 / 100, (10.2 * 100 + 10.8 * 300) / 400, (10.2 * 100 + 10.8 * 300 + 32.5 / 3 * 100) / 500]
    s2 = [12.1, (12.1 * 200 + 12.0 * 200) / 400]  # the second session starts afresh
    closes = [10.0, 11.0, 10.5, 12.0, 12.2]
    assert_values(col(f, "volu_vwapdist_1"), [c / s - 1 for c, s in zip(closes, s1 + s2, strict=True)])


def test_relative_volume_compares_with_the_same_bar_of_the_previous_20_sessions():
    # 22 sessions of 2 bars; the first bar of session s trades 100 + s, the second 1000 + 10 s
    rows = []
    for s in range(22):
        rows += [(10.0, 10.5, 9.5, 10.0, 100.0 + s), (10.0, 10.5, 9.5, 10.0, 1000.0 + 10 * s)]
    f = features(session_frame("AAA", rows, consecutive_days(22), 2))
    # session 20: first bar 120 / mean(100..119) = 120/109.5; second 1200 / mean(1000..1190) = 1200/1095
    # session 21: 121 / mean(101..120) = 121/110.5; 1210 / 1105; sessions 0-19 have no 20 previous sessions
    assert_values(col(f, "volu_relvol_20"), [None] * 40 + [120 / 109.5, 1200 / 1095, 121 / 110.5, 1210 / 1105])


# --- session features ---------------------------------------------------------------------------


def test_session_features_across_a_holiday_an_early_close_and_a_weekend():
    # Wed 2024-11-27 (full day, 26 bars), Thanksgiving closed, Fri 11-29 early close 13:00 ET = 18:00 UTC
    # (14 bars), Mon 12-02 (26 bars)
    days = [dt.date(2024, 11, 27), dt.date(2024, 11, 29), dt.date(2024, 12, 2)]
    early = {dt.date(2024, 11, 29): dt.datetime(2024, 11, 29, 18, 0, tzinfo=UTC)}
    f = features(session_frame("AAA", random_walk(66, seed=3), days, [26, 14, 26], close_at=early))
    minutes = col(f, "sess_minsopen_1")
    left = col(f, "sess_barsclose_1")
    # the first bar closes 15 minutes after the open, the last 6.5 h (390 min) after it; 3.5 h (210) on the early close
    assert minutes[:2] == [15, 30] and minutes[25] == 390 and minutes[26] == 15 and minutes[39] == 210
    # bars left after this one: 25 ... 0 on a full day, 13 ... 0 on the early close
    assert left[:26] == list(range(25, -1, -1)) and left[26:40] == list(range(13, -1, -1))
    assert col(f, "sess_dow_1") == [3] * 26 + [5] * 14 + [1] * 26
    # 0 within a session, 2 days over Thanksgiving, 3 over the weekend; nothing before the first bar
    gap = col(f, "sess_gapdays_1")
    assert gap[0] is None and set(gap[1:26]) == {0} and gap[26] == 2 and set(gap[27:40]) == {0} and gap[40] == 3


def test_bars_to_close_counts_a_short_last_bar_as_one():
    # a session closing 10 minutes into its third 15-minute bar: 2 bars left after the first, 1 after the second
    day = dt.date(2024, 7, 3)
    s_open = dt.datetime.combine(day, dt.time(14, 30), UTC)
    f = features(session_frame("AAA", random_walk(3, seed=1), [day], 3, close_at={day: s_open + dt.timedelta(minutes=40)}))
    assert col(f, "sess_barsclose_1") == [2, 1, 0]
    assert col(f, "sess_minsopen_1") == [15, 30, 40]


# --- cross-section ------------------------------------------------------------------------------


def _xs_universe() -> pl.DataFrame:
    # 6 bars each; ret_log_4 on bars 4 and 5 = 0.02 (AAA), -0.01 (BBB), 0.02 (CCC), 0.05 (DDD);
    # EEE only has the last 2 bars (no 4-bar return)
    r4 = {"AAA": 0.02, "BBB": -0.01, "CCC": 0.02, "DDD": 0.05}
    sectors = {"AAA": "X", "BBB": "X", "CCC": "Y", "DDD": "Y", "EEE": "Y"}
    frames = []
    for sym, r in r4.items():
        closes = [100.0, 100.0, 99.0, 100.5, 100.0 * math.exp(r), 100.0 * math.exp(r)]  # C_4/C_0 = C_5/C_1 = e^r
        frames.append(session_frame(sym, [(c, c + 1, c - 1, c, 1000.0) for c in closes], consecutive_days(1), 6, sector=sectors[sym]))
    eee = session_frame("EEE", [(20.0, 21.0, 19.0, 20.0, 10.0)] * 6, consecutive_days(1), 6, sector="Y").tail(2)
    return features(*frames, eee)


def test_cross_sectional_rank_is_percentile_with_ties_averaged_and_nulls_left_out():
    f = _xs_universe()
    # ranks of (-0.01, 0.02, 0.02, 0.05): BBB 1, AAA and CCC tie at 2.5, DDD 4 -> (rank - 1)/(4 - 1)
    expected = {"AAA": 0.5, "BBB": 0.0, "CCC": 0.5, "DDD": 1.0}
    for sym, e in expected.items():
        assert_values(col(f, "xs_rank_ret_4", sym), [None] * 4 + [e, e])
    assert col(f, "xs_rank_ret_4", "EEE") == [None, None]


def test_cross_sectional_relative_to_market_and_sector():
    f = _xs_universe()
    # market mean (0.02 - 0.01 + 0.02 + 0.05)/4 = 0.02; sector X mean 0.005, sector Y mean 0.035 (EEE has no value)
    rel_mkt = {"AAA": 0.0, "BBB": -0.03, "CCC": 0.0, "DDD": 0.03}
    rel_sec = {"AAA": 0.015, "BBB": -0.015, "CCC": -0.015, "DDD": 0.015}
    for sym in rel_mkt:
        assert_values(col(f, "xs_relmkt_ret_4", sym), [None] * 4 + [rel_mkt[sym]] * 2)
        assert_values(col(f, "xs_relsector_ret_4", sym), [None] * 4 + [rel_sec[sym]] * 2)


def test_cross_sectional_rank_with_one_symbol_is_null():
    f = features(session_frame("AAA", random_walk(30, seed=5), consecutive_days(1), 30))
    assert f["xs_rank_ret_4"].null_count() == 30


def _beta_universe(n_bars: int, noise: bool) -> tuple[pl.DataFrame, dict[str, list[float]]]:
    """Three symbols with log returns r_AAA = 2x, r_BBB = x (+ noise), r_CCC = 0 (+ noise)."""
    rng = random.Random(11)
    x = [0.01 * math.sin(0.7 * t) + 0.004 * math.cos(2.3 * t) for t in range(n_bars)]
    eps = [[rng.gauss(0, 0.003) if noise else 0.0 for _ in range(n_bars)] for _ in range(2)]
    rets = {"AAA": [2 * v for v in x], "BBB": [v + e for v, e in zip(x, eps[0], strict=True)], "CCC": list(eps[1])}
    frames = []
    for sym, r in rets.items():
        closes, c = [], 50.0
        for v in r:
            c *= math.exp(v)
            closes.append(c)
        frames.append(session_frame(sym, [(p, p * 1.001, p * 0.999, p, 100.0) for p in closes], consecutive_days(1), n_bars))
    return features(*frames), rets


def test_rolling_beta_when_returns_are_exactly_twice_the_market_is_2():
    f, _ = _beta_universe(135, noise=False)
    # market r_1 = (2x + x + 0)/3 = x, so beta(AAA) = 2, beta(BBB) = 1, beta(CCC) = cov(0, m)/var(m) = 0;
    # the first beta needs 130 returns, i.e. 131 bars (index 130)
    for sym, beta in {"AAA": 2.0, "BBB": 1.0, "CCC": 0.0}.items():
        assert_values(col(f, "xs_beta_130", sym), [None] * 130 + [beta] * 5)


def test_rolling_beta_is_population_cov_over_var_of_the_last_130_returns():
    f, rets = _beta_universe(133, noise=True)
    n = 130
    # bar t's r_1 is ln(C_t/C_{t-1}) = the generated r[t] (bar 0 has none); market = equal-weight mean
    r = {s: [None, *v[1:]] for s, v in rets.items()}
    m = [None] + [sum(r[s][t] for s in r) / 3 for t in range(1, 133)]
    for sym in ("BBB", "CCC"):
        expected = [None] * 130
        for t in range(130, 133):
            rs, ms = r[sym][t - n + 1 : t + 1], m[t - n + 1 : t + 1]
            mr, mm = sum(rs) / n, sum(ms) / n
            cov = sum((a - mr) * (b - mm) for a, b in zip(rs, ms, strict=True)) / n
            var = sum((b - mm) ** 2 for b in ms) / n
            expected.append(cov / var)
        assert_values(col(f, "xs_beta_130", sym), expected)


# --- the library's windows, warm-up and robustness ---------------------------------------------


@pytest.fixture(scope="module")
def long_run() -> tuple[pl.DataFrame, dict[str, list[tuple[float, ...]]]]:
    """3 symbols x 24 sessions x 26 bars (624 bars each) of a clean random walk."""
    rows = {s: random_walk(24 * 26, seed=i) for i, s in enumerate(("AAA", "BBB", "CCC"))}
    days = consecutive_days(24)
    frames = [session_frame(s, r, days, 26, sector="TECH" if s != "CCC" else "FIN") for s, r in rows.items()]
    return features(*frames), rows


def test_library_features_match_their_definitions_at_the_library_windows(long_run):
    f, rows = long_run
    o, h, lo, c, v = (list(x) for x in zip(*rows["AAA"], strict=True))
    r1 = ref_log_return(c, 1)
    macd, signal, hist = ref_macd(c, 12, 26, 9)
    pctb, width = ref_bollinger(c, 20, 2.0)
    atr = ref_wilder(ref_true_range(h, lo, c), 14)
    gk = [0.5 * math.log(a / b) ** 2 - (2 * math.log(2) - 1) * math.log(x / y) ** 2 for a, b, x, y in zip(h, lo, c, o, strict=True)]
    expected = {
        "ret_log_26": ref_log_return(c, 26),
        "vol_realized_26": ref_window(r1, 26, lambda w: math.sqrt(sum(x * x for x in w))),
        "vol_realized_78": ref_window(r1, 78, lambda w: math.sqrt(sum(x * x for x in w))),
        "vol_parkinson_26": ref_window([math.log(a / b) ** 2 for a, b in zip(h, lo, strict=True)], 26,
                                       lambda w: math.sqrt(sum(w) / (4 * 26 * math.log(2)))),
        "vol_garmanklass_26": ref_window(gk, 26, lambda w: math.sqrt(sum(w) / 26)),
        "vol_natr_14": [None if a is None else 100 * a / x for a, x in zip(atr, c, strict=True)],
        "tech_rsi_14": ref_rsi(c, 14),
        "tech_macd_26": macd, "tech_macdsignal_9": signal, "tech_macdhist_9": hist,
        "tech_stochk_14": ref_stoch_k(h, lo, c, 14),
        "tech_stochd_3": ref_sma(ref_stoch_k(h, lo, c, 14), 3),
        "tech_williamsr_14": ref_williams(h, lo, c, 14),
        "tech_cci_20": ref_cci(h, lo, c, 20),
        "tech_roc_12": [None if p is None else 100 * (x / p - 1) for x, p in zip(c, lag(c, 12), strict=True)],
        "trend_sma_20": [None if s is None else x / s - 1 for x, s in zip(c, ref_sma(c, 20), strict=True)],
        "trend_sma_50": [None if s is None else x / s - 1 for x, s in zip(c, ref_sma(c, 50), strict=True)],
        "trend_ema_12": [None if s is None else x / s - 1 for x, s in zip(c, ref_ema(c, 12), strict=True)],
        "trend_ema_26": [None if s is None else x / s - 1 for x, s in zip(c, ref_ema(c, 26), strict=True)],
        "trend_adx_14": ref_adx(h, lo, c, 14),
        "band_pctb_20": pctb, "band_width_20": width,
        "volu_obvslope_26": [None if s is None else s / m for s, m in zip(ref_lsq_slope(ref_obv(c, v), 26), ref_sma(v, 26), strict=True)],
        "volu_mfi_14": ref_mfi(h, lo, c, v, 14),
    }
    for name, values in expected.items():
        assert_values(col(f, name), values, name)


def test_warmup_of_each_feature_is_its_count_of_leading_null_rows(long_run):
    f, _ = long_run
    for sym in ("AAA", "BBB", "CCC"):
        one = f.filter(pl.col("symbol") == sym)
        for name, spec in FEATURES.items():
            values = one[name].to_list()
            lead = next(i for i, x in enumerate(values) if x is not None)
            assert lead == spec.leading_rows(26), name
            # warm-up rows are null, not a filled-in 0 or NaN; after it a clean series has every value
            assert all(x is None for x in values[:lead]) and None not in values[lead:], name


def test_warmup_flag_is_true_exactly_while_some_feature_is_still_warming_up(long_run):
    f, _ = long_run
    # 26 bars a session: relative volume's 20 sessions (520 bars) outlast the 130 bars of beta
    assert WARMUP_BARS == 130 and FEATURES["volu_relvol_20"].warmup == 20
    some_null = pl.any_horizontal(pl.col(n).is_null() for n in FEATURES)
    for sym in ("AAA", "BBB", "CCC"):
        one = f.filter(pl.col("symbol") == sym)
        assert one["warmup"].to_list() == [True] * 520 + [False] * 104
        assert one.select(some_null).to_series().to_list() == one["warmup"].to_list()


def test_warmup_flag_with_short_sessions_ends_after_the_bar_warmup():
    # 2 bars a session: 70 sessions = 140 bars; 130 bars outlast the 20 sessions (40 bars)
    f = features(session_frame("AAA", random_walk(140, seed=9), consecutive_days(70), 2))
    assert f["warmup"].to_list() == [True] * 130 + [False] * 10


def test_symbol_with_fewer_bars_than_the_warmup_is_all_warmup_and_does_not_crash():
    days = consecutive_days(6)
    long = session_frame("AAA", random_walk(156, seed=1), days, 26)
    short_rows = random_walk(5, seed=2)
    f = features(long, session_frame("ZZZ", short_rows, days[-1:], 5))
    z = f.filter(pl.col("symbol") == "ZZZ")
    assert z.height == 5 and z["warmup"].all()
    for name, spec in FEATURES.items():
        if spec.unit == "bars" and spec.warmup >= 5:
            assert z[name].null_count() == 5, name
    # what the 5 bars do define is there: the 4-bar return of the last bar
    assert_values(z["ret_log_4"].to_list(), [None] * 4 + [math.log(short_rows[4][3] / short_rows[0][3])])


def test_nan_and_inf_in_bars_give_nulls_not_nan_and_leave_other_symbols_alone():
    days = consecutive_days(8)
    rows = {s: random_walk(8 * 26, seed=i) for i, s in enumerate(("AAA", "BBB", "CCC"))}
    clean = [session_frame(s, r, days, 26) for s, r in rows.items()]
    bad_b = [tuple(float("nan") if (t == 150 and k == 3) else x for k, x in enumerate(row)) for t, row in enumerate(rows["BBB"])]
    bad_c = [tuple(float("inf") if (t == 160 and k == 1) else x for k, x in enumerate(row)) for t, row in enumerate(rows["CCC"])]
    dirty = [clean[0], session_frame("BBB", bad_b, days, 26), session_frame("CCC", bad_c, days, 26)]
    good, f = features(*clean), features(*dirty)
    floats = [n for n in FEATURES if f[n].dtype == pl.Float64]
    assert f.select(pl.sum_horizontal(pl.col(n).is_nan().sum() for n in floats)).item() == 0
    assert f.select(pl.sum_horizontal(pl.col(n).is_infinite().sum() for n in floats)).item() == 0
    b = f.filter(pl.col("symbol") == "BBB")
    # the NaN close: its own and the next bar's return are undefined -> null
    assert b["ret_log_1"][150] is None and b["ret_log_1"][151] is None and b["tech_rsi_14"][150] is None
    c_ = f.filter(pl.col("symbol") == "CCC")
    assert c_["vol_parkinson_26"][160] is None and c_["vol_natr_14"][160] is None
    # AAA's own features are unchanged; its cross-sectional ones lose nothing (BBB's bad values are left out
    # of the market's means and ranks instead of turning them NaN for everyone)
    a_bad, a_good = f.filter(pl.col("symbol") == "AAA"), good.filter(pl.col("symbol") == "AAA")
    own = [n for n in FEATURES if not n.startswith("xs_")]
    # exactly, up to the order of a float sum (polars may add a group's values in another order run to run)
    assert_frame_equal(a_bad.select(own), a_good.select(own), check_exact=False, rtol=1e-12, atol=1e-15)
    for name in (n for n in FEATURES if n.startswith("xs_")):
        assert a_bad[name].null_count() == a_good[name].null_count(), name


def test_empty_frame_raises_feature_input_error():
    empty = pl.DataFrame(schema=BAR_COLUMNS)
    with pytest.raises(FeatureInputError, match="empty"):
        compute_features(empty, bar_length=BAR)


def test_missing_column_raises_feature_input_error():
    bars = session_frame("AAA", random_walk(3, seed=1), consecutive_days(1), 3).drop("vwap")
    with pytest.raises(FeatureInputError, match="vwap"):
        compute_features(bars, bar_length=BAR)


# --- labels -------------------------------------------------------------------------------------


def _label_bars() -> pl.DataFrame:
    t = [dt.datetime(2024, 1, 2, 14, 45, tzinfo=UTC) + i * BAR for i in range(6)]
    return pl.DataFrame({
        "symbol": ["AAA"] * 6 + ["BBB"] * 6,
        "close_ts": t + t,
        "close": [10.0, 11.0, 11.0, 9.0, 12.0, 13.0, 50.0, 40.0, 45.0, 45.0, 60.0, 30.0],
    })


def test_labels_forward_log_return_and_sign_for_1_and_4_bars():
    lab = compute_labels(_label_bars(), horizons=(1, 4))
    a = lab.filter(pl.col("symbol") == "AAA")
    # ln(C_{t+1}/C_t): 11/10, 11/11, 9/11, 12/9, 13/12, then past the end
    assert_values(a["label_fwd_ret_1"].to_list(), [math.log(1.1), 0.0, math.log(9 / 11), math.log(12 / 9), math.log(13 / 12), None])
    assert a["label_fwd_sign_1"].to_list() == [1, 0, -1, 1, 1, None]
    # ln(C_{t+4}/C_t): 12/10, 13/11, then null (not 0) for the last 4 bars
    assert_values(a["label_fwd_ret_4"].to_list(), [math.log(1.2), math.log(13 / 11), None, None, None, None])
    assert a["label_fwd_sign_4"].to_list() == [1, 1, None, None, None, None]


def test_labels_never_look_into_another_symbol():
    lab = compute_labels(_label_bars(), horizons=(1, 4))
    b = lab.filter(pl.col("symbol") == "BBB")
    assert_values(b["label_fwd_ret_1"].to_list(), [math.log(0.8), math.log(45 / 40), 0.0, math.log(60 / 45), math.log(0.5), None])
    assert_values(b["label_fwd_ret_4"].to_list(), [math.log(60 / 50), math.log(30 / 40), None, None, None, None])
    # AAA's last bar must not use BBB's first close
    assert lab.filter(pl.col("symbol") == "AAA")["label_fwd_ret_1"][-1] is None


def test_labels_when_a_close_is_nan_are_null_not_nan():
    bars = _label_bars().with_columns(pl.when(pl.int_range(pl.len()) == 2).then(float("nan")).otherwise(pl.col("close")).alias("close"))
    a = compute_labels(bars, horizons=(1,)).filter(pl.col("symbol") == "AAA")["label_fwd_ret_1"].to_list()
    assert a[1] is None and a[2] is None and a[0] is not None
