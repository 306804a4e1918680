import datetime as dt

import numpy as np
import polars as pl
import pytest

from orchestration.market.synthetic import SECTORS, SyntheticConfig, SyntheticMarket
from orchestration.market.validation import validate_bars
from tests.conftest import utc

NOW = utc(2030, 1, 1)


def _fetch(cfg: SyntheticConfig, start: dt.datetime, end: dt.datetime, now: dt.datetime = NOW) -> pl.DataFrame:
    return SyntheticMarket(cfg).fetch(start, end, now=now).bars


def test_synthetic_market_when_same_seed_gives_identical_bars():
    cfg = SyntheticConfig(n_symbols=6, n_sectors=3, seed=11)
    a = _fetch(cfg, utc(2024, 1, 2), utc(2024, 1, 20))
    b = _fetch(SyntheticConfig(n_symbols=6, n_sectors=3, seed=11), utc(2024, 1, 2), utc(2024, 1, 20))
    assert a.height > 0 and a.equals(b)
    c = _fetch(SyntheticConfig(n_symbols=6, n_sectors=3, seed=12), utc(2024, 1, 2), utc(2024, 1, 20))
    assert not a.equals(c)


def test_synthetic_market_when_generated_to_a_later_end_keeps_earlier_days_identical():
    cfg = SyntheticConfig(n_symbols=5, n_sectors=2)
    short = SyntheticMarket(cfg).simulate(dt.date(2024, 2, 1)).bars
    long = SyntheticMarket(cfg).simulate(dt.date(2024, 6, 28)).bars
    assert long.head(short.height).equals(short)


def test_synthetic_market_sessions_follow_xnys_holidays_and_early_closes():
    bars = _fetch(SyntheticConfig(n_symbols=2, n_sectors=1), utc(2024, 7, 1), utc(2024, 12, 1))
    ny = bars.with_columns(pl.col("ts").dt.convert_time_zone("America/New_York").alias("ny"))
    per_day = ny.filter(pl.col("symbol") == "AAA").group_by(pl.col("ny").dt.date().alias("d")).agg(
        pl.len().alias("n"), pl.col("ny").max().alias("last")
    )
    days = dict(zip(per_day["d"].to_list(), per_day.iter_rows(named=True), strict=True))
    assert dt.date(2024, 7, 4) not in days  # Independence Day
    assert dt.date(2024, 11, 28) not in days  # Thanksgiving
    assert days[dt.date(2024, 11, 29)]["n"] == 14  # early close: last bar 12:45-13:00 ET
    assert days[dt.date(2024, 11, 29)]["last"].time() == dt.time(12, 45)
    assert days[dt.date(2024, 7, 3)]["n"] == 14
    assert days[dt.date(2024, 7, 2)]["n"] == 26
    assert days[dt.date(2024, 7, 2)]["last"].time() == dt.time(15, 45)
    assert not any(d.weekday() >= 5 for d in days)


def test_synthetic_market_has_48_symbols_in_8_sectors_by_default():
    sim = SyntheticMarket().simulate(dt.date(2024, 1, 3))
    assert sim.symbols.height == 48
    assert sorted(sim.symbols["sector"].unique().to_list()) == sorted(SECTORS)
    assert sim.symbols.group_by("sector").len()["len"].to_list() == [6] * 8


def test_synthetic_market_bars_pass_every_validation_rule():
    bars = _fetch(SyntheticConfig(n_symbols=12, n_sectors=4), utc(2024, 1, 2), utc(2024, 3, 1))
    result = validate_bars(bars, now=NOW)
    assert result.rejected.height == 0
    assert result.gaps.height == 0
    assert result.clean.height == bars.height


def test_synthetic_market_volume_is_u_shaped_within_the_session():
    bars = _fetch(SyntheticConfig(n_symbols=12, n_sectors=4), utc(2024, 1, 2), utc(2024, 4, 1))
    by_bar = (
        bars.with_columns(pl.col("ts").dt.convert_time_zone("America/New_York").dt.time().alias("t"))
        .group_by("t").agg(pl.col("volume").mean()).sort("t")
    )
    v = by_bar["volume"].to_numpy()
    assert v[0] > 1.3 * v[len(v) // 2] and v[-1] > 1.1 * v[len(v) // 2]


def test_synthetic_market_oracle_has_a_clearly_positive_ic_against_realised_returns():
    sim = SyntheticMarket().simulate(dt.date(2024, 4, 30))
    bars = sim.bars.sort("symbol", "ts").with_columns(pl.col("close").log().alias("lc"))
    fwd = bars.with_columns((pl.col("lc").shift(-4).over("symbol") - pl.col("lc")).alias("fwd")).drop_nulls("fwd")
    oracle = sim.oracle.filter(pl.col("horizon") == 4).select("symbol", "ts", "expected_log_return")
    joined = fwd.join(oracle, on=["symbol", "ts"])
    ic = joined.group_by("ts").agg(pl.corr("expected_log_return", "fwd").alias("ic")).drop_nans()["ic"]
    t_stat = ic.mean() / ic.std() * np.sqrt(ic.len())
    assert 0.05 < ic.mean() < 0.2, ic.mean()
    assert t_stat > 8


def test_synthetic_fetch_excludes_bars_that_have_not_closed_by_now():
    now = utc(2024, 1, 3, 15, 10)  # 10:10 ET: bars 09:30, 09:45 closed; 10:00 still open
    bars = _fetch(SyntheticConfig(n_symbols=3, n_sectors=1), utc(2024, 1, 3), utc(2024, 1, 4), now=now)
    assert bars["ts"].max() == utc(2024, 1, 3, 14, 45)
    assert bars.height == 3 * 2


def test_synthetic_config_when_fault_class_unknown_names_it():
    from orchestration.errors import ConfigError

    with pytest.raises(ConfigError, match="faults: unknown class"):
        SyntheticConfig(faults={"gremlins": 1})


def test_a_second_world_overrides_the_planted_alpha_and_unknown_coefficients_are_refused():
    import datetime as dt

    import pytest

    from orchestration.errors import ConfigError
    from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket

    start = dt.datetime(2024, 1, 3, tzinfo=dt.UTC)
    end, now = start + dt.timedelta(days=3), start + dt.timedelta(days=5)
    quiet = {"gap_reversal": 0.0, "residual_reversal": 0.0, "volume_momentum": 0.0, "sector_momentum": 0.0}
    flat = SyntheticMarket(SyntheticConfig(n_symbols=6, n_sectors=2, alpha=quiet)).fetch(start, end, now=now)
    assert flat.oracle["expected_log_return"].abs().max() == 0.0  # no planted effect, nothing to forecast
    default = SyntheticMarket(SyntheticConfig(n_symbols=6, n_sectors=2)).fetch(start, end, now=now)
    assert default.oracle["expected_log_return"].abs().max() > 0
    with pytest.raises(ConfigError, match="alpha: unknown coefficient"):
        SyntheticConfig(alpha={"momentum": 1.0})
    with pytest.raises(ConfigError, match="effect spans"):
        SyntheticConfig(alpha={"gap_bars": 100})


def test_the_examples_in_the_synthetic_market_modules_run():
    import doctest

    from orchestration.market import synthetic, synthetic_crypto, synthetic_faults, synthetic_path

    for module in (synthetic, synthetic_path, synthetic_faults, synthetic_crypto):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
