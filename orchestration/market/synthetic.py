"""A seeded, deterministic synthetic market with a planted alpha and its oracle.

The market (DESIGN.md §5) has N symbols in S sectors trading 15-minute bars in the
regular sessions of real XNYS days (``exchange_calendars``: holidays, early closes).
Each bar's log return is::

    r[i,t] = drift[i,t] + gap[i,t] + beta[i] * m[t] + s[sector(i),t] + e[i,t]

* ``m`` (market) and ``e`` (idiosyncratic) have GARCH(1,1) variances: volatility
  clusters; ``s`` (sector) has a constant variance.
* Every shock is scaled by a U-shaped intraday profile (busy open and close).
* The first bar of a session adds an overnight gap ``gap = beta * g_m + g_i``.
* Volume follows a U-shaped intraday profile, a per-symbol level, log-normal noise
  and rises with the size of the bar's shock.

The surprise of a bar is ``u = r - drift`` (everything but the scheduled drift).

Planted alpha
-------------
``drift`` is scheduled at the moment an event is observed, for the bars that
follow it. Every event is driven by zero-mean shocks, so the sum of the drift
already scheduled for bars ``t+1 .. t+h`` is the exact expected forward log
return given everything known at the close of bar ``t``: that sum is the
**oracle** forecast. Four effects, with the coefficients in :data:`ALPHA`:

1. *gap reversal*: a symbol's gap relative to the cross-sectional mean gap,
   ``g_rel``, reverts by ``gap_reversal * g_rel`` spread evenly over the first
   ``gap_bars`` bars of the session (the bar of the gap included);
2. *residual reversal*: a bar's surprise relative to the cross-sectional mean
   surprise, ``u_rel``, reverts by ``residual_reversal * regime * u_rel`` over the
   next ``reversal_bars`` bars, where ``regime = sqrt(h_m / mean h_m)`` clipped to
   [0.5, 2] is stronger in volatile markets;
3. *volume-confirmed continuation*: when relative volume (volume over its
   expected level for that symbol and time of day) ``rv`` exceeds
   ``volume_threshold``, ``u_rel`` continues by
   ``volume_momentum * min(rv - volume_threshold, 2) * u_rel`` over the next
   ``volume_bars`` bars;
4. *sector momentum*: at the close, the session return of each sector relative to
   the market continues by ``sector_momentum`` times itself, spread over the
   bars of the next session.

Observable features (returns, gaps, relative volume, sector returns, realised
volatility) carry this signal; the oracle's IC at the 4-bar horizon is about
0.05-0.15, so models face real noise and a leaky model stands out.

The walk over the bars is in :mod:`orchestration.market.synthetic_path`, the bad rows a fetch can carry
on request in :mod:`orchestration.market.synthetic_faults`; both are importable from here.

Example:
    >>> import datetime as dt
    >>> m = SyntheticMarket(SyntheticConfig(n_symbols=4, n_sectors=2, origin=dt.date(2024, 1, 2)))
    >>> sim = m.simulate(dt.date(2024, 1, 3))
    >>> sim.bars.height, sorted(sim.bars["symbol"].unique().to_list())
    (208, ['AAA', 'BBB', 'CCC', 'DDD'])
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

import numpy as np
import polars as pl

from orchestration.errors import ConfigError
from orchestration.market.bars import UTC_TS, SourceBatch, conform, timeframe_delta
from orchestration.market.calendars import bar_grid, sessions
from orchestration.market.corporate_actions import conform_actions, empty_actions
from orchestration.market.synthetic_faults import FAULT_REASONS, inject_faults
from orchestration.market.synthetic_path import HORIZONS, RING, SECTORS, Universe, run_path

__all__ = [
    "ACTION_SESSIONS",
    "ALPHA",
    "FAULT_REASONS",
    "HORIZONS",
    "SECTORS",
    "Simulation",
    "SyntheticConfig",
    "SyntheticMarket",
    "inject_faults",
    "restate_raw",
    "symbol_names",
]

#: The planted alpha's documented coefficients (see the module docstring).
ALPHA: dict[str, float] = {
    "gap_reversal": 0.30,
    "gap_bars": 8,
    "residual_reversal": 0.12,
    "reversal_bars": 4,
    "volume_momentum": 0.20,
    "volume_threshold": 1.5,
    "volume_bars": 8,
    "sector_momentum": 0.15,
}


def symbol_names(n: int) -> list[str]:
    """``AAA, BBB, ... ZZZ, AAB, BBC, ...``: unique, readable, valid tickers."""
    if not 1 <= n <= 26 * 26:
        raise ConfigError(f"n_symbols={n}: must be between 1 and 676")
    out = []
    for i in range(n):
        letter, k = chr(65 + i % 26), i // 26
        out.append(letter * 3 if k == 0 else letter * 2 + chr(65 + (i % 26 + k) % 26))
    return out


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic market; equal configs give identical markets."""

    seed: int = 7
    n_symbols: int = 48
    n_sectors: int = 8
    origin: dt.date = dt.date(2024, 1, 2)
    timeframe: str = "15m"
    faults: Mapping[str, int] = field(default_factory=dict)
    #: Overrides of the planted alpha's coefficients (:data:`ALPHA`), e.g. a second world whose effects
    #: are weaker or shorter, to check that models are not tuned to one set of constants.
    alpha: Mapping[str, float] = field(default_factory=dict)
    #: Plant a seeded 2-for-1 split and a cash dividend (:data:`ACTION_SESSIONS`) in the raw prices (off by default:
    #: the demo's numbers are pinned on the unsplit market).
    corporate_actions: bool = False
    #: ``equities`` (XNYS sessions, tickers AAA..) or ``crypto`` (24/7 UTC days, pairs BTC/USD..: see
    #: :mod:`orchestration.market.synthetic_crypto`).
    market: str = "equities"

    def __post_init__(self) -> None:
        if self.market not in ("equities", "crypto"):
            raise ConfigError(f"market={self.market!r}: choose equities or crypto")
        if self.market == "crypto" and self.corporate_actions:
            raise ConfigError("corporate_actions=True: the crypto market has no splits or dividends")
        if not 1 <= self.n_sectors <= len(SECTORS):
            raise ConfigError(f"n_sectors={self.n_sectors}: must be between 1 and {len(SECTORS)}")
        if self.timeframe == "1d":
            raise ConfigError("timeframe='1d': the synthetic market generates intraday bars only")
        timeframe_delta(self.timeframe)
        if self.market == "crypto":
            from orchestration.market.synthetic_crypto import crypto_names

            crypto_names(self.n_symbols)
        else:
            symbol_names(self.n_symbols)
        unknown = set(self.faults) - set(FAULT_REASONS)
        if unknown:
            raise ConfigError(f"faults: unknown class(es) {sorted(unknown)}; known: {sorted(FAULT_REASONS)}")
        unknown = set(self.alpha) - set(ALPHA)
        if unknown:
            raise ConfigError(f"alpha: unknown coefficient(s) {sorted(unknown)}; known: {sorted(ALPHA)}")
        spans = [int(self.coefficients[k]) for k in ("gap_bars", "reversal_bars", "volume_bars")]
        if not all(1 <= n < RING for n in spans):
            raise ConfigError(f"alpha: effect spans {spans} must be between 1 and {RING - 1} bars")

    @property
    def coefficients(self) -> dict[str, float]:
        """:data:`ALPHA` (crypto: with :data:`~orchestration.market.synthetic_crypto.CRYPTO_ALPHA`) and this market's overrides."""
        if self.market == "crypto":
            from orchestration.market.synthetic_crypto import CRYPTO_ALPHA

            return {**ALPHA, **CRYPTO_ALPHA, **self.alpha}
        return {**ALPHA, **self.alpha}

    def key(self) -> tuple:
        return (self.seed, self.n_symbols, self.n_sectors, self.origin, self.timeframe, tuple(sorted(self.alpha.items())),
                self.corporate_actions, self.market)


@dataclass(frozen=True)
class Simulation:
    bars: pl.DataFrame  # source columns, without faults
    oracle: pl.DataFrame  # symbol, ts, horizon, expected_log_return
    symbols: pl.DataFrame  # symbol, sector, beta
    actions: pl.DataFrame | None = None  # corporate actions planted in the raw prices (ACTION_COLUMNS)


def _universe(cfg: SyntheticConfig, rng: np.random.Generator) -> Universe:
    n = cfg.n_symbols
    return Universe(
        names=symbol_names(n),
        sector=np.arange(n) % cfg.n_sectors,
        beta=rng.uniform(0.6, 1.4, n),
        price0=np.exp(rng.uniform(np.log(15), np.log(400), n)),
        volume_level=np.exp(rng.uniform(np.log(2e4), np.log(4e5), n)),
        idio_var=rng.uniform(0.0020, 0.0045, n) ** 2,
    )


class SyntheticMarket:
    """The synthetic market as a :class:`~orchestration.market.bars.BarSource`."""

    name = "synthetic"

    def __init__(self, config: SyntheticConfig | None = None):
        self.config = config or SyntheticConfig()

    def simulate(self, last_session: dt.date) -> Simulation:
        """Simulate every session from the origin to ``last_session`` (cached)."""
        return _simulate(self.config.key(), last_session)

    def fetch(self, start: dt.datetime, end: dt.datetime, *, now: dt.datetime | None = None) -> SourceBatch:
        """Bars with open time in ``[start, end)`` that have closed by ``now``."""
        now = now or dt.datetime.now(dt.UTC)
        end = min(end, now)
        if end <= start or end.date() < self.config.origin:
            return self._batch(_empty_sim(self.config))
        sim = self.simulate(end.date())
        tf = timeframe_delta(self.config.timeframe)
        in_window = pl.col("ts").is_between(start, end, closed="left") & (pl.col("ts") + tf <= now)
        bars = sim.bars.filter(in_window)
        if self.config.faults:
            bars = inject_faults(bars, self.config.faults, seed=self.config.seed, now=now)
        oracle = sim.oracle.filter(pl.col("ts").is_between(start, end, closed="left") & (pl.col("ts") + tf <= now))
        return self._batch(Simulation(bars=bars, oracle=oracle, symbols=sim.symbols))

    def corporate_actions(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """The planted actions with ex-date in ``[start, end]`` (none unless ``corporate_actions=True``)."""
        if not self.config.corporate_actions:
            return empty_actions()
        last = max(d for d, _ in _action_sessions(self.config.origin))
        actions = self.simulate(min(end, last)).actions
        if actions is None:
            return empty_actions()
        return actions.filter(pl.col("ex_date").is_between(pl.lit(start.isoformat()), pl.lit(end.isoformat())))

    def _batch(self, sim: Simulation) -> SourceBatch:
        bars = sim.bars.with_row_index("source_row").with_columns(pl.col("source_row").cast(pl.Int64))
        return SourceBatch(bars=conform(bars), label=self.name, symbols=sim.symbols, oracle=sim.oracle)


def _empty_sim(cfg: SyntheticConfig) -> Simulation:
    return _simulate(cfg.key(), cfg.origin - dt.timedelta(days=1))


@lru_cache(maxsize=4)
def _simulate(key: tuple, last_session: dt.date) -> Simulation:
    seed, n_symbols, n_sectors, origin, timeframe, alpha, actions, market = key
    cfg = SyntheticConfig(seed=seed, n_symbols=n_symbols, n_sectors=n_sectors, origin=origin, timeframe=timeframe, alpha=dict(alpha),
                          corporate_actions=actions, market=market)
    uni_rng, path_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if market == "crypto":
        from orchestration.market.synthetic_crypto import crypto_universe

        uni = crypto_universe(cfg, uni_rng)
    else:
        uni = _universe(cfg, uni_rng)
    grid = bar_grid("24/7" if market == "crypto" else "XNYS", timeframe, origin, last_session)
    arrays = run_path(cfg, uni, grid, path_rng)
    sim = _frames(cfg, uni, grid, arrays)
    return _with_actions(cfg, sim) if actions else sim


#: The planted actions: (session index from the origin, kind). A 2-for-1 split of one seeded symbol and a cash
#: dividend of 1% of the previous close (to the cent) on the next symbol.
ACTION_SESSIONS = ((5, "cash_dividend"), (8, "split"))


def _action_sessions(origin: dt.date) -> list[tuple[dt.date, str]]:
    days = sessions("XNYS", origin, origin + dt.timedelta(days=40))["session"].to_list()
    return [(days[i], kind) for i, kind in ACTION_SESSIONS]


def _with_actions(cfg: SyntheticConfig, sim: Simulation) -> Simulation:
    """Raw prices from the simulated (economic) ones: each action planted from its ex-date on."""
    names = symbol_names(cfg.n_symbols)
    pick = int(np.random.default_rng(cfg.seed).integers(cfg.n_symbols))
    rows, bars = [], sim.bars
    for day, kind in _action_sessions(cfg.origin):
        symbol = names[pick] if kind == "split" else names[(pick + 1) % cfg.n_symbols]
        session = pl.col("ts").dt.convert_time_zone("America/New_York").dt.date()
        before = bars.filter((pl.col("symbol") == symbol) & (session < day))
        if before.is_empty() or bars.filter(session >= day).is_empty():
            continue  # not in the simulated span (yet)
        if kind == "split":
            ratio, amount, scale = "2", None, 0.5
        else:
            last_close = Decimal(repr(before.sort("ts")["close"][-1]))
            amount = str((last_close / 100).quantize(Decimal("0.01")))
            ratio, scale = None, 1.0 - float(amount) / float(last_close)
        rows.append({"symbol": symbol, "ex_date": day.isoformat(), "kind": kind, "ratio": ratio, "amount": amount})
        bars = restate_raw(bars, symbol=symbol, ex_date=day, price_scale=scale, volume_scale=1.0 / scale if kind == "split" else 1.0)
    actions = conform_actions(pl.DataFrame(rows, schema={k: pl.String for k in ("symbol", "ex_date", "kind", "ratio", "amount")}),
                              source="synthetic")
    return Simulation(bars=bars, oracle=sim.oracle, symbols=sim.symbols, actions=actions)


def restate_raw(bars: pl.DataFrame, *, symbol: str, ex_date: dt.date, price_scale: float, volume_scale: float = 1.0) -> pl.DataFrame:
    """``bars`` as traded after a corporate action: ``symbol``'s prices from ``ex_date`` on × ``price_scale``
    (a 2-for-1 split: 0.5, volume × 2; a dividend ``D`` after close ``C``: ``1 - D / C``)."""
    hit = (pl.col("symbol") == symbol) & (pl.col("ts").dt.convert_time_zone("America/New_York").dt.date() >= ex_date)
    prices = [pl.when(hit).then((pl.col(c) * price_scale).round(4)).otherwise(pl.col(c)).alias(c)
              for c in ("open", "high", "low", "close", "vwap")]
    volume = pl.when(hit).then((pl.col("volume") * volume_scale).round(0)).otherwise(pl.col("volume")).alias("volume")
    return bars.with_columns(*prices, volume)


def _frames(cfg: SyntheticConfig, uni: Universe, grid: pl.DataFrame, arrays: dict) -> Simulation:
    n, T = cfg.n_symbols, grid.height
    ts = grid["ts"]
    sym = pl.Series("symbol", uni.names * T) if T else pl.Series("symbol", [], pl.String)
    base = {"symbol": sym, "ts": ts.gather(np.repeat(np.arange(T), n)) if T else ts}
    cols = {k: v.reshape(-1) for k, v in arrays["bars"].items()}
    bars = pl.DataFrame({**base, **cols}).with_columns(
        pl.lit(cfg.timeframe).alias("timeframe"),
        pl.col("trade_count").cast(pl.Int64),
        pl.col("open", "high", "low", "close", "vwap").round(4),
        pl.lit("synthetic").alias("source"),
    )
    oracle = pl.concat(
        [
            pl.DataFrame({**base, "horizon": pl.Series([h] * (T * n), dtype=pl.Int32), "expected_log_return": o.reshape(-1)})
            for h, o in arrays["oracle"].items()
        ]
    ).with_columns(pl.col("ts").cast(UTC_TS))
    symbols = pl.DataFrame(
        {"symbol": uni.names, "sector": [uni.sectors[s] for s in uni.sector], "beta": uni.beta.round(3)}
    )
    return Simulation(bars=bars.with_columns(pl.col("ts").cast(UTC_TS)), oracle=oracle, symbols=symbols)
