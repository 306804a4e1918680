"""The backtest's compiled loops: what runs once per bar or per cell of the (time × symbol) grid.

:mod:`models.backtest` prepares whole arrays and imports this module on its first run (so
importing the backtest does not import numba); numba compiles each loop then and caches the
machine code on disk, so a later process only loads it.

Floating-point results are the ones NumPy's element-wise operations give: each formula keeps
NumPy's order of operations (no fast-math, no reassociation) and every running sum adds in the
order ``np.bincount`` would, so compiling a step never changes a cent of the output.
"""

from __future__ import annotations

import numba
import numpy as np

_compiled = numba.njit(cache=True, nogil=True)


@_compiled
def _nonzero(grid: np.ndarray) -> int:
    """How many cells of a 2-D grid are not zero (sizes the outputs before they are filled in order)."""
    count = 0
    for t in range(grid.shape[0]):
        for s in range(grid.shape[1]):
            if grid[t, s] != 0:
                count += 1
    return count


@_compiled
def rank_weights(scores: np.ndarray, k: int, long_only: bool, unit: float) -> tuple[np.ndarray, np.ndarray]:
    """Target weight of every (time, symbol) from that time's scores, and whether the time has any score.

    Each row ranks its ``n`` scored symbols highest first, ties by column (alphabetical: the
    columns are sorted symbols), as a stable sort would: long-only holds the first ``min(k, n)``
    at ``unit``; long-short the first ``min(k, n // 2)`` at ``+unit`` and as many from the end
    at ``-unit`` (one ranking, so the two sides are disjoint even on ties). Only the ends of the
    ranking are needed, so each is selected in one pass over the row rather than the row sorted.
    """
    n_times, n_symbols = scores.shape
    weights = np.zeros((n_times, n_symbols))
    decide = np.zeros(n_times, dtype=np.bool_)
    long_keys, long_columns = np.empty(n_symbols), np.empty(n_symbols, dtype=np.int64)
    short_keys, short_columns = np.empty(n_symbols), np.empty(n_symbols, dtype=np.int64)
    for t in range(n_times):
        n = 0
        for s in range(n_symbols):
            if not np.isnan(scores[t, s]):
                n += 1
        if n == 0:
            continue
        decide[t] = True
        per_side = min(k, n) if long_only else min(k, n // 2)
        longs, shorts = 0, 0
        for s in range(n_symbols):  # columns in order: on a tie, the earlier one ranks first
            score = scores[t, s]
            if np.isnan(score):
                continue
            longs = _keep_smallest(-score, s, longs, per_side, long_keys, long_columns, 1)
            if not long_only:  # the lowest scores; on a tie the later column ranks last
                shorts = _keep_smallest(score, s, shorts, per_side, short_keys, short_columns, -1)
        for i in range(per_side):
            weights[t, long_columns[i]] = unit
            if not long_only:
                weights[t, short_columns[i]] = -unit
    return weights, decide


@numba.njit(cache=True, nogil=True, inline="always")  # inlined: a call per cell costs more than the work
def _keep_smallest(key: float, column: int, size: int, m: int, keys: np.ndarray, columns: np.ndarray, order: int) -> int:
    """Offer ``(key, column)`` to the ``m`` smallest pairs ``(key, order × column)`` kept sorted in ``keys[:size]``.

    Returns the new size.
    """
    if size == m:
        worst = keys[m - 1]
        if key > worst or (key == worst and order * column > order * columns[m - 1]):
            return size
        j = m - 1  # replaces the largest kept
    else:
        j = size
        size += 1
    while j > 0 and (key < keys[j - 1] or (key == keys[j - 1] and order * column < order * columns[j - 1])):
        keys[j], columns[j] = keys[j - 1], columns[j - 1]
        j -= 1
    keys[j], columns[j] = key, column
    return size


@_compiled
def ffill(a: np.ndarray) -> np.ndarray:
    """Carry each column's last non-NaN value down (NaN until the first one)."""
    out = a.copy()
    last = np.full(a.shape[1], np.nan)
    for t in range(a.shape[0]):
        for c in range(a.shape[1]):
            if np.isnan(a[t, c]):
                out[t, c] = last[c]
            else:
                last[c] = a[t, c]
    return out


@_compiled
def volatility_before(log_ret: np.ndarray, window: int) -> np.ndarray:
    """Per column, the volatility known before each row: the sample standard deviation of the non-NaN values among
    the ``window`` rows up to the previous one (the last one defined, over rows where it is not: at least two
    values), 0 while there is none.

    Running sums of the values and their squares per column, taken about the column's first
    value (shifted data: no cancellation when the values sit far from zero); rows outer, so the
    grid is read in memory order.
    """
    n_rows, n_cols = log_ret.shape
    out = np.empty((n_rows, n_cols))
    shift, found = np.zeros(n_cols), np.zeros(n_cols, dtype=np.bool_)
    for t in range(n_rows):
        for c in range(n_cols):
            if not found[c] and not np.isnan(log_ret[t, c]):
                shift[c], found[c] = log_ret[t, c], True
    total, squares, count = np.zeros(n_cols), np.zeros(n_cols), np.zeros(n_cols, dtype=np.int64)
    last = np.zeros(n_cols)
    for t in range(n_rows):
        for c in range(n_cols):
            out[t, c] = last[c]
            v = log_ret[t, c]
            if not np.isnan(v):
                total[c] += v - shift[c]
                squares[c] += (v - shift[c]) ** 2
                count[c] += 1
            if t >= window:
                old = log_ret[t - window, c]
                if not np.isnan(old):
                    total[c] -= old - shift[c]
                    squares[c] -= (old - shift[c]) ** 2
                    count[c] -= 1
            if count[c] >= 2:
                last[c] = np.sqrt(max(squares[c] - total[c] * total[c] / count[c], 0.0) / (count[c] - 1))
    return out


@_compiled
def walk_bars(open_: np.ndarray, close: np.ndarray, tradable: np.ndarray, weights: np.ndarray, sigma: np.ndarray,
              volume: np.ndarray, decide: np.ndarray, initial_cash: float, compound: bool, impact_coef: float,
              linear_rate: float, per_trade: float, constrained: bool, size_open: bool, financing: float,
              borrow: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The bar loop: cash after each bar, the fills (shares), the carry, and the book at each close (rows: long
    value, short value, equity; see :func:`_mark_book`).

    At each bar: (with ``size_open``, the pending targets are first re-sized from the equity and
    prices at this open) pending orders (target − position) fill at the open where the symbol
    trades, paying notional, ``linear_rate`` × notional (commission and spread), the square-root
    impact ``|q|^1.5 × impact_coef × sigma / sqrt(volume) × open`` and the per-trade commission —
    with ``constrained``, sells first and then the buys scaled down to the cash left; then carry
    accrues at the close (``financing`` per bar on negative cash, ``borrow`` per bar on the short
    book); then, on a decision bar, new targets are whole shares of ``weight / close`` × equity
    (× initial cash without compounding; a wiped-out book goes flat: sizing from negative equity
    would invert it). Shares are integer-valued float64 inside the loop (exact below 2**53).
    """
    n_times, n_symbols = weights.shape
    pos, target = np.zeros(n_symbols), np.zeros(n_symbols)
    linear, impact_unit = np.zeros(n_symbols), np.zeros(n_symbols)  # an order's cost per share (and per share^1.5)
    cash_path, carry = np.empty(n_times), np.zeros((n_times, 2))
    fills, curve = np.zeros((n_times, n_symbols), dtype=np.int64), np.empty((3, n_times))
    value, longs, shorts = np.empty(n_symbols), np.empty(n_symbols), np.empty(n_symbols)
    impact = impact_coef != 0.0
    pending, resize, decided, cash = False, False, 0, initial_cash
    for t in range(n_times):
        if pending and resize:  # size at this open: equity marked at the open where a symbol trades
            book = initial_cash
            if compound:
                book = cash
                for s in range(n_symbols):
                    price = open_[t, s] if tradable[t, s] else (close[t - 1, s] if t > 0 else 0.0)
                    book += pos[s] * price
            book = max(book, 0.0)
            for s in range(n_symbols):
                price = open_[t, s] if tradable[t, s] else (close[t - 1, s] if t > 0 else 0.0)
                target[s] = np.trunc(weights[decided, s] * book / price) if price > 0 else 0.0
            resize = False
        if pending:
            paid, trades, pending = 0.0, 0, False
            for s in range(n_symbols):
                q = target[s] - pos[s]
                if q != 0.0 and tradable[t, s]:
                    linear[s] = linear_rate * open_[t, s]
                    if impact:
                        unit = impact_coef * sigma[t, s] / np.sqrt(volume[t, s]) * open_[t, s]
                        impact_unit[s] = unit if np.isfinite(unit) else 0.0
                    if constrained and q > 0:
                        continue  # buys after every sell, below
                    size = abs(q)
                    paid += q * open_[t, s] + size * linear[s]
                    if impact:
                        paid += size**1.5 * impact_unit[s]
                    trades += 1
                    pos[s] = target[s]
                    fills[t, s] = np.int64(q)
                elif q != 0.0:
                    pending = True  # waits for the symbol's next tradable bar
            cash -= paid + per_trade * trades
            if constrained:
                cash = _buy_with_cash_left(t, cash, pos, target, open_, tradable, linear, impact_unit, impact, per_trade,
                                           fills)
        if financing > 0.0 and cash < 0.0:
            carry[t, 0] = -cash * financing
        if borrow > 0.0:
            for s in range(n_symbols):
                if pos[s] < 0.0:
                    carry[t, 1] += -pos[s] * close[t, s] * borrow
        cash -= carry[t, 0] + carry[t, 1]
        cash_path[t] = cash
        long_value, short_value, book_value = _mark_book(pos, close[t], value, longs, shorts)
        curve[0, t], curve[1, t], curve[2, t] = long_value, short_value, cash + book_value
        if decide[t]:
            if size_open:
                decided, resize = t, True
            else:
                book = initial_cash
                if compound:
                    book = cash
                    for s in range(n_symbols):
                        book += pos[s] * close[t, s]
                book = max(book, 0.0)
                for s in range(n_symbols):
                    per_price = weights[t, s] / close[t, s] if close[t, s] > 0 else 0.0
                    target[s] = np.trunc(per_price * book)
            pending = True
    return cash_path, fills, carry, curve


@_compiled
def _buy_with_cash_left(t: int, cash: float, pos: np.ndarray, target: np.ndarray, open_: np.ndarray, tradable: np.ndarray,
                        linear: np.ndarray, impact_unit: np.ndarray, impact: bool, per_trade: float,
                        fills: np.ndarray) -> float:
    """The buys of a cash-constrained bar, after its sells: scaled down to the cash left; returns the cash after them."""
    n_symbols = pos.size
    need, buys = 0.0, 0
    for s in range(n_symbols):
        q = target[s] - pos[s]
        if q > 0.0 and tradable[t, s]:
            need += q * open_[t, s] + q * linear[s] + (q**1.5 * impact_unit[s] if impact else 0.0)
            buys += 1
    scale = 1.0
    if need > 0.0 and need + per_trade * buys > cash:
        scale = max(cash - per_trade * buys, 0.0) / need
    paid, trades = 0.0, 0
    for s in range(n_symbols):
        q = target[s] - pos[s]
        if q > 0.0 and tradable[t, s]:
            q = np.trunc(q * scale) if scale < 1.0 else q
            if q > 0.0:
                paid += q * open_[t, s] + q * linear[s] + (q**1.5 * impact_unit[s] if impact else 0.0)
                trades += 1
                pos[s] += q
                fills[t, s] = np.int64(q)
            target[s] = pos[s]  # what the cash could not pay for is dropped, not chased
    return cash - (paid + per_trade * trades)


@_compiled
def fill_rows(fills: np.ndarray, open_: np.ndarray, sigma: np.ndarray, volume: np.ndarray, decide: np.ndarray,
              impact_coef: float, commission_rate: float, spread_rate: float,
              per_trade: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One row per fill, in time then symbol order, and the same summed per bar.

    Returns ``index`` (rows: bar, symbol, shares, decision bar: the last decision before the
    fill, as every decision replaces all targets), ``money`` (rows: price, notional,
    commission, spread, impact, cost) and ``per_bar`` (rows: notional, commission, spread,
    impact, cost, one column per bar). Costs of ``q`` shares at ``p`` (``N = |q| p``):
    commission ``per_trade + commission_rate × N``, spread ``spread_rate × N``, impact
    ``impact_coef × sigma × sqrt(|q| / volume) × N``.
    """
    n_times, n_symbols = fills.shape
    count = _nonzero(fills)
    index, money, per_bar = np.empty((4, count), dtype=np.int64), np.empty((6, count)), np.zeros((5, n_times))
    row, last_decision = 0, -1
    for t in range(n_times):
        for s in range(n_symbols):
            shares = fills[t, s]
            if shares == 0:
                continue
            size = float(abs(shares))
            price = open_[t, s]
            notional = size * price
            impact = impact_coef * sigma[t, s] * np.sqrt(size / volume[t, s]) * notional if impact_coef != 0.0 else 0.0
            commission = per_trade + commission_rate * notional
            spread = spread_rate * notional
            cost = commission + spread + impact
            index[0, row], index[1, row], index[2, row], index[3, row] = t, s, shares, last_decision
            money[0, row], money[1, row], money[2, row] = price, notional, commission
            money[3, row], money[4, row], money[5, row] = spread, impact, cost
            per_bar[0, t] += notional
            per_bar[1, t] += commission
            per_bar[2, t] += spread
            per_bar[3, t] += impact
            per_bar[4, t] += cost
            row += 1
        if decide[t]:
            last_decision = t
    return index, money, per_bar


@_compiled
def holdings(held: np.ndarray, close: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every non-zero holding in time then symbol order: bar, symbol, shares, and value at the close."""
    n_times, n_symbols = held.shape
    count = _nonzero(held)
    t_index, s_index, shares, value = (np.empty(count, dtype=np.int64), np.empty(count, dtype=np.int64),
                                       np.empty(count, dtype=np.int64), np.empty(count))
    row = 0
    for t in range(n_times):
        for s in range(n_symbols):
            if held[t, s] != 0:
                t_index[row], s_index[row], shares[row] = t, s, held[t, s]
                value[row] = float(held[t, s]) * close[t, s]
                row += 1
    return t_index, s_index, shares, value


@_compiled
def _mark_book(pos: np.ndarray, close: np.ndarray, value: np.ndarray, longs: np.ndarray, shorts: np.ndarray) -> tuple[float, float, float]:
    """The long book's value, the short book's (≤ 0) and the whole book's at this close.

    The same floats as NumPy's ``value = held * close``, ``np.where(value > 0, value, 0).sum(axis=1)`` (and
    ``< 0``) and ``value.sum(axis=1)`` on the holdings grid: each row adds in NumPy's pairwise order
    (:func:`_pairwise_sum`, from the reduction's identity 0), with three scratch rows and no grid.
    """
    n = pos.size
    for s in range(n):
        v = pos[s] * close[s]
        value[s] = v
        longs[s] = v if v > 0 else 0.0
        shorts[s] = v if v < 0 else 0.0
    return 0.0 + _pairwise_sum(longs, 0, n), 0.0 + _pairwise_sum(shorts, 0, n), 0.0 + _pairwise_sum(value, 0, n)


@_compiled
def _pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """``a[lo:lo + n]`` summed as NumPy's ``add.reduce`` sums a contiguous row (``pairwise_sum`` in its umath loops):
    blocks of at most 128 (:func:`_block_sum`), halved at a multiple of 8 above that, the halves added in a tree.

    (A reduction starts from the identity 0, which the caller adds.) The tree walks an explicit stack: numba's
    on-disk cache cannot reload a recursive function.
    """
    if n <= 128:
        return _block_sum(a, lo, n)
    starts, sizes = np.empty(64, dtype=np.int64), np.empty(64, dtype=np.int64)
    left, has_left = np.empty(64), np.zeros(64, dtype=np.bool_)
    top, starts[0], sizes[0] = 0, lo, n
    while True:
        if sizes[top] > 128:  # descend into the left half
            half = sizes[top] // 2
            half -= half % 8
            starts[top + 1], sizes[top + 1], has_left[top + 1] = starts[top], half, False
            top += 1
            continue
        value = _block_sum(a, starts[top], sizes[top])
        top -= 1
        while top >= 0 and has_left[top]:  # both halves done: add them and return up
            value = left[top] + value
            top -= 1
        if top < 0:
            return value
        half = sizes[top] // 2
        half -= half % 8
        left[top], has_left[top] = value, True
        starts[top + 1], sizes[top + 1], has_left[top + 1] = starts[top] + half, sizes[top] - half, False
        top += 1


@_compiled
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:
    """NumPy's sum of at most 128 values: in order below 8, else eight running sums added as a tree, then the tail."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res
