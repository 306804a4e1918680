"""IC metrics against hand computations."""

import math

import polars as pl
import pytest

from models.metrics import ic_by_time, ic_decay, ic_summary, oracle_fraction


def _pearson(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


FRAME = pl.DataFrame({
    "ts": [1] * 4 + [2] * 4 + [3] * 4,
    "score": [0.1, 0.4, 0.2, 0.9, 1.0, -1.0, 0.5, 0.0, 3.0, 1.0, 2.0, 4.0],
    "ret": [0.01, 0.03, -0.02, 0.05, -0.01, 0.02, 0.00, 0.01, 0.02, 0.01, -0.01, 0.04],
})


def test_ic_per_timestamp_is_the_cross_sectional_pearson_and_spearman():
    per = ic_by_time(FRAME, score="score", label="ret")
    first = FRAME.filter(pl.col("ts") == 1)
    assert per["ic"][0] == pytest.approx(_pearson(first["score"].to_list(), first["ret"].to_list()), rel=1e-12)
    # ranks at ts=1: score 1,3,2,4 ; ret 2,3,1,4
    assert per["rank_ic"][0] == pytest.approx(_pearson([1, 3, 2, 4], [2, 3, 1, 4]), rel=1e-12)


def test_summary_averages_per_timestamp_ics_and_computes_icir_and_hit_rate():
    per = ic_by_time(FRAME, score="score", label="ret")["ic"].to_list()
    mean = sum(per) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in per) / 2)
    summary = ic_summary(FRAME, score="score", label="ret")
    assert summary["ic"] == pytest.approx(mean, abs=1e-12)
    assert summary["icir"] == pytest.approx(mean / sd, rel=1e-9)
    assert summary["ic_tstat"] == pytest.approx(mean / sd * math.sqrt(3), rel=1e-9)
    # hit rate: rows where score and return have the same sign, rows with a zero on either side left out
    pairs = [(s, r) for s, r in zip(FRAME["score"], FRAME["ret"], strict=True) if s != 0 and r != 0]
    assert summary["hit_rate"] == pytest.approx(sum((s > 0) == (r > 0) for s, r in pairs) / len(pairs))
    assert summary["timestamps"] == 3 and summary["rows"] == 12


def test_timestamps_with_fewer_than_three_names_or_null_scores_are_left_out():
    frame = pl.concat([FRAME, pl.DataFrame({"ts": [4, 4], "score": [1.0, 2.0], "ret": [0.1, 0.2]})])
    frame = frame.with_columns(pl.when(pl.col("ts") == 3).then(None).otherwise(pl.col("score")).alias("score"))
    assert ic_by_time(frame, score="score", label="ret")["ts"].to_list() == [1, 2]


def test_perfect_and_inverted_scores_give_ic_one_and_minus_one():
    frame = FRAME.with_columns(perfect=pl.col("ret"), inverted=-pl.col("ret"))
    assert ic_summary(frame, score="perfect", label="ret")["ic"] == pytest.approx(1.0)
    assert ic_summary(frame, score="inverted", label="ret")["rank_ic"] == pytest.approx(-1.0)


def test_ic_decay_and_oracle_fraction():
    frame = FRAME.with_columns(ret2=pl.col("ret") * 2, noise=pl.Series([0.3, -0.1, 0.2, 0.0, 0.1, 0.5, -0.2, 0.4, 0.0, 0.3, 0.1, -0.3]))
    decay = ic_decay(frame, score="score", labels={1: "ret", 4: "ret2", 26: "noise"})
    assert decay[1] == pytest.approx(decay[4])  # scaling the label does not change a correlation
    assert list(decay) == [1, 4, 26]
    assert oracle_fraction(0.05, 0.1) == pytest.approx(0.5)
    assert math.isnan(oracle_fraction(0.05, 0.0))


def test_constant_or_non_finite_scores_count_as_ic_zero_not_dropped():
    # ts 2: a flat model (one tree, a constant); ts 3: a model that blew up on one name
    scores = [0.1, 0.4, 0.2, 0.9, 0.5, 0.5, 0.5, 0.5, 3.0, math.inf, 2.0, 4.0]
    frame = FRAME.with_columns(pl.Series("score", scores))
    per = ic_by_time(frame, score="score", label="ret")
    assert per["ts"].to_list() == [1, 2, 3]
    assert per["degenerate"].to_list() == [False, True, True]
    assert per["ic"].to_list()[1:] == [0.0, 0.0] and per["rank_ic"].to_list()[1:] == [0.0, 0.0]
    summary = ic_summary(frame, score="score", label="ret")
    assert summary["timestamps"] == 3 and summary["degenerate_timestamps"] == 2
    assert summary["ic"] == pytest.approx(per["ic"][0] / 3)
