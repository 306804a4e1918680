"""The residual (cross-sectional) family against hand computations on small universes."""

from __future__ import annotations

import math

import polars as pl
import pytest
from test_indicators import assert_values, col, consecutive_days, features, random_walk, session_frame

from feature_repo import FEATURES

DAYS = consecutive_days(3)
PER = 4  # bars per session


def universe(n_sessions: int = 3, per: int = PER) -> pl.DataFrame:
    days = consecutive_days(n_sessions)
    specs = [("AAA", "TECH", 1), ("BBB", "TECH", 2), ("CCC", "FIN", 3)]
    return features(*[session_frame(s, random_walk(n_sessions * per, seed=seed), days, per, sector=sector)
                      for s, sector, seed in specs])


def test_the_residual_family_is_in_the_catalogue_with_definitions():
    for name in ("xs_resid_1", "xs_residlag3_1", "xs_residregime_4", "xs_residvol_8", "xs_relgap_1",
                 "xs_relgapdecay_8", "xs_relsectorprev_1", "xs_mktregime_26", "xs_relvolprof_60"):
        assert name in FEATURES and FEATURES[name].definition


def test_residual_return_is_r1_minus_the_universe_mean_and_its_lags_are_the_symbols_own():
    f = universe()
    per_time = f.group_by("event_timestamp").agg(pl.col("xs_resid_1").sum().abs().max().alias("s"), pl.col("ret_log_1").mean().alias("m"))
    assert per_time["s"].drop_nulls().max() < 1e-15  # sums to zero across symbols at every close
    joined = f.join(per_time.select("event_timestamp", "m"), on="event_timestamp")
    a = joined.filter(pl.col("symbol") == "AAA").sort("event_timestamp")
    assert_values(a["xs_resid_1"].to_list()[1:], (a["ret_log_1"] - a["m"]).to_list()[1:])
    resid = col(f, "xs_resid_1")
    assert_values(col(f, "xs_residlag1_1")[1:], resid[:-1])
    assert_values(col(f, "xs_residlag3_1")[3:], resid[:-3])


def test_relative_gap_is_the_demeaned_overnight_gap_and_decays_linearly_through_the_session():
    f = universe()
    gaps = {s: col(f, "ret_overnight_1", s) for s in ("AAA", "BBB", "CCC")}
    rel = col(f, "xs_relgap_1")
    k = PER  # the first bar of the second session
    mean_gap = sum(g[k] for g in gaps.values()) / 3
    assert rel[k] == pytest.approx(gaps["AAA"][k] - mean_gap, abs=1e-15)
    assert rel[k : k + PER] == pytest.approx([rel[k]] * PER)  # held through the session
    for w in (4, 8, 16):
        decay = col(f, f"xs_relgapdecay_{w}")
        assert decay[k : k + PER] == pytest.approx([rel[k] * max(0.0, 1 - j / w) for j in range(PER)], abs=1e-15)


def test_previous_sessions_sector_relative_return_uses_the_session_before_only():
    f = universe()
    closes = {s: col(f, "ret_log_1", s) for s in ("AAA", "BBB", "CCC")}
    # session 2 (bars 4..7): its own close-to-close return per symbol
    session = {s: sum(r[PER : 2 * PER]) for s, r in closes.items()}
    tech = (session["AAA"] + session["BBB"]) / 2
    market = sum(session.values()) / 3
    third = col(f, "xs_relsectorprev_1")[2 * PER : 3 * PER]
    assert third == pytest.approx([tech - market] * PER, abs=1e-15)
    assert col(f, "xs_relsectorprev_1", "CCC")[2 * PER] == pytest.approx(session["CCC"] - market, abs=1e-15)
    assert col(f, "xs_relsectorprev_1")[:PER] == [None] * PER  # no session before the first


def test_relative_volume_from_the_profile_is_one_when_volume_is_level_times_a_fixed_profile():
    n_sessions, per = 60, 4
    days = consecutive_days(n_sessions)
    profile = [3.0, 1.0, 1.0, 2.0]  # busy open and close
    frames = []
    for s, level, seed in (("AAA", 1000.0, 1), ("BBB", 5000.0, 2), ("CCC", 200.0, 3)):
        rows = [(o, h, lo, c, level * profile[i % per]) for i, (o, h, lo, c, _) in enumerate(random_walk(n_sessions * per, seed=seed))]
        frames.append(session_frame(s, rows, days, per))
    f = features(*frames)
    later = f.filter(pl.col("event_timestamp") > f["event_timestamp"].sort()[-40])
    # exact up to the level's window not covering whole sessions (a partial session tilts it by < 0.2%)
    assert later["xs_relvolprof_60"].to_list() == pytest.approx([1.0] * later.height, rel=2e-3)
    assert later["xs_residvol_1"].abs().max() < 1e-4  # no abnormal volume, (almost) no volume-confirmed move


def test_market_regime_is_one_when_the_market_moves_by_the_same_size_every_bar():
    n_sessions, per = 30, 26
    days = consecutive_days(n_sessions)
    rows, price = [], 50.0
    for i in range(n_sessions * per):
        close = price * math.exp(0.01 if i % 2 else -0.01)
        rows.append((price, max(price, close) * 1.001, min(price, close) * 0.999, close, 1000.0))
        price = close
    f = features(*[session_frame(s, rows, days, per) for s in ("AAA", "BBB", "CCC")])
    regime = [x for x in col(f, "xs_mktregime_26") if x is not None]
    assert len(regime) > 500 and regime == pytest.approx([1.0] * len(regime))
