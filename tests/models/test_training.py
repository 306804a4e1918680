"""The training run on the synthetic market: walk-forward OOF, stacking, gates and the leakage sentinel."""

import dataclasses
import datetime as dt

import numpy as np
import polars as pl
import pytest

from feature_repo import compute_features, compute_labels
from models.cv import PurgedWalkForward
from models.data import prepare
from models.ensemble import stack_weights
from models.gates import GateConfig, evaluate_gates
from models.training import TrainingConfig, cross_validate, evaluate_run
from models.walkforward import WalkForwardConfig, run_walk_forward, shuffle_labels
from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket
from tests.features.synthetic_bars import BAR, feature_bars

LABEL = "label_fwd_ret_4"
FIRST, LAST = dt.date(2024, 3, 1), dt.date(2024, 8, 30)
FAST = TrainingConfig(walk_forward=WalkForwardConfig(families=("sklearn_ridge", "xgboost"), n_folds=3), sentinel_family="xgboost")


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    bars = feature_bars(n_symbols=24, first=FIRST, last=LAST)
    joined = compute_features(bars, bar_length=BAR).join(compute_labels(bars), on=["symbol", "event_timestamp"])
    return prepare(joined.filter(~pl.col("warmup")).drop("warmup"), label=LABEL)


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    raw = feature_bars(n_symbols=24, first=FIRST, last=LAST)
    return raw.select("symbol", pl.col("close_ts").alias("ts"), "open", "close", pl.col("volume").cast(pl.Float64))


@pytest.fixture(scope="module")
def oracle() -> pl.DataFrame:
    market = SyntheticMarket(SyntheticConfig(n_symbols=24))
    end = dt.datetime.combine(LAST + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    sim = market.fetch(dt.datetime.combine(FIRST, dt.time(), tzinfo=dt.UTC), end, now=end + dt.timedelta(days=2))
    return sim.oracle.filter(pl.col("horizon") == 4).select(
        "symbol", (pl.col("ts") + BAR).alias("event_timestamp"), pl.col("expected_log_return").alias("expected"))


@pytest.fixture(scope="module")
def run(frame, bars, oracle):
    cv = cross_validate(frame, FAST)
    return cv, evaluate_run(cv, FAST, bars=bars, oracle=oracle)


def test_walk_forward_oof_rows_lie_in_their_fold_and_training_ends_a_purge_before_it(run, frame):
    cv, _ = run
    times = frame["event_timestamp"].unique().sort().to_list()
    for fold in cv.walk_forward.folds:
        assert fold.test_start_index - fold.train_end_index >= 4  # purge ≥ the label horizon (4 bars)
        assert fold.train_end < fold.test_start
        rows = cv.walk_forward.oof.filter(pl.col("fold") == fold.number)["event_timestamp"]
        assert rows.min() >= times[fold.test_start_index] and rows.max() <= times[fold.test_end_index - 1]
    assert cv.walk_forward.oof["fold"].min() == 0 and cv.walk_forward.oof.select(pl.col("pred_xgboost").is_nan().sum()).item() == 0


def test_ensemble_oos_ic_is_clearly_positive_and_below_the_oracle(run):
    _, ev = run
    ens = ev.report["models"]["ensemble"]
    assert ens["ic"] > 0.02 and ens["ic_tstat"] > 3, ens
    assert ens["ic"] < ev.report["oracle_ic"], (ens["ic"], ev.report["oracle_ic"])
    assert 0 < ens["oracle_fraction"] < 1
    assert set(ev.report["ic_decay"]) == {"1", "4", "26"}


def test_gates_pass_on_real_labels_with_a_quiet_sentinel(run):
    cv, ev = run
    assert abs(cv.sentinel_ic) < 0.01 or abs(cv.sentinel_tstat) < 3, (cv.sentinel_ic, cv.sentinel_tstat)
    assert ev.passed, [g for g in ev.gates if not g.passed]
    assert {g.name for g in ev.gates} == {"min_oos_ic", "min_oos_icir", "max_overfit_ratio", "leakage_sentinel",
                                          "min_backtest_sharpe", "max_drawdown", "min_oos_timestamps"}


def test_a_model_trained_on_shuffled_labels_fails_the_gates(frame, bars):
    shuffled = shuffle_labels(frame, LABEL, seed=3)
    cv = cross_validate(shuffled, FAST)
    ev = evaluate_run(cv, FAST, bars=bars)
    failed = {g.name for g in ev.gates if not g.passed}
    # No information is left, so the signal gates fail; which of them trips first is the noise's choice (with
    # seed 3 an OOS IC of 0.010 slips past min_oos_ic, its t-stat of ~2 does not get it past the others).
    assert not ev.passed and failed & {"min_oos_ic", "min_oos_icir"}
    assert abs(ev.report["models"]["ensemble"]["ic_tstat"]) < 3  # indistinguishable from zero


def test_leakage_sentinel_fails_a_pipeline_whose_training_folds_include_the_test_block(frame, monkeypatch):
    honest = PurgedWalkForward.split

    def leaky(self, timestamps):  # the bug the sentinel exists for: test rows end up in training
        return [dataclasses.replace(f, train_end_index=f.test_end_index) for f in honest(self, timestamps)]

    monkeypatch.setattr(PurgedWalkForward, "split", leaky)
    config = TrainingConfig(
        walk_forward=WalkForwardConfig(families=("xgboost",), n_folds=2, params={"xgboost": {"max_depth": 10, "min_child_weight": 1}}),
        sentinel_family="xgboost",
    )
    cv = cross_validate(frame, config)
    evaluation = {"sentinel_ic": cv.sentinel_ic, "sentinel_tstat": cv.sentinel_tstat}
    verdict = next(g for g in evaluate_gates(evaluation, GateConfig()) if g.name == "leakage_sentinel")
    assert not verdict.passed, cv.sentinel_ic


def test_shuffle_labels_permutes_within_each_timestamp_only(frame):
    shuffled = shuffle_labels(frame, LABEL)
    before = frame.group_by("event_timestamp").agg(pl.col(LABEL).sort()).sort("event_timestamp")
    after = shuffled.group_by("event_timestamp").agg(pl.col(LABEL).sort()).sort("event_timestamp")
    assert before.equals(after)
    assert not np.array_equal(frame[LABEL].to_numpy(), shuffled[LABEL].to_numpy())


def test_stacking_weights_are_non_negative_sum_to_one_and_favour_the_informative_member():
    rng = np.random.default_rng(1)
    t = np.repeat(np.arange(400), 10)
    y = rng.normal(size=t.size)
    oof = pl.DataFrame({"event_timestamp": t, LABEL: y, "pred_a": y + 2 * rng.normal(size=t.size),
                        "pred_b": rng.normal(size=t.size), "pred_c": -y + rng.normal(size=t.size)})
    weights, _ = stack_weights(oof, ["a", "b", "c"], label=LABEL)
    assert all(w >= 0 for w in weights.values()) and sum(weights.values()) == pytest.approx(1.0)
    assert weights["a"] > 0.7 > weights["b"] and weights["c"] == 0.0  # shrunk halfway to equal weights


def test_stacking_leaves_out_members_without_a_significantly_positive_ic_and_keeps_the_best_if_none_has_one():
    rng = np.random.default_rng(4)
    t = np.repeat(np.arange(400), 10)
    y = rng.normal(size=t.size)
    oof = pl.DataFrame({"event_timestamp": t, LABEL: y, "pred_a": y + 3 * rng.normal(size=t.size),
                        "pred_noise": rng.normal(size=t.size)})
    from models.metrics import ic_summary

    assert abs(ic_summary(oof, score="pred_noise", label=LABEL, time="event_timestamp")["ic_tstat"]) < 2  # the premise
    assert stack_weights(oof, ["a", "noise"], label=LABEL)[0] == {"a": 1.0, "noise": 0.0}
    weak = oof.with_columns(pred_a=pl.col("pred_a") * 0 + rng.normal(size=t.size) + 0.001 * pl.col(LABEL))
    weights, _ = stack_weights(weak, ["a", "noise"], label=LABEL)
    assert sorted(weights.values()) == [0.0, 1.0]  # nobody is significant: the best one alone, not an average of noise


def test_walk_forward_config_refuses_an_unknown_learner_and_label():
    with pytest.raises(ValueError, match="unknown learner family"):
        WalkForwardConfig(families=("catboost",))
    with pytest.raises(ValueError, match="label"):
        WalkForwardConfig(label="label_fwd_ret_7")


def test_walk_forward_purge_is_never_shorter_than_the_label_horizon():
    cfg = WalkForwardConfig(label="label_fwd_ret_26", purge=2)
    assert cfg.cv(n_timestamps=1000).purge == 26


def test_run_walk_forward_is_deterministic(frame):
    cfg = WalkForwardConfig(families=("sklearn_ridge",), n_folds=2)
    small = frame.filter(pl.col("event_timestamp") < frame["event_timestamp"].min() + dt.timedelta(days=40))
    one, two = run_walk_forward(small, cfg), run_walk_forward(small, cfg)
    assert one.oof.equals(two.oof)


class BrokenLearner:
    """A member gone wrong: a constant (a tree model that kept one tree), or that plus infinities on some rows."""

    family = "broken"

    def __init__(self, params: dict):
        self.params, self.mean = params, 0.0

    def fit(self, x, y, *, feature_names, groups=None):
        self.mean = float(np.mean(y))
        return self

    def predict(self, x, *, groups=None):
        out = np.full(len(x), self.mean)
        if self.params.get("blow_up"):
            out[::5] = np.inf
        return out

    def feature_importance(self):
        return {}


@pytest.mark.parametrize("blow_up", [False, True], ids=["constant", "non-finite"])
def test_a_degenerate_member_gets_weight_zero_with_a_warning_and_cannot_break_the_ensemble(frame, bars, monkeypatch, blow_up):
    from models.learners import LEARNERS
    from models.training import fit_candidate

    monkeypatch.setitem(LEARNERS, "broken", BrokenLearner)
    config = TrainingConfig(walk_forward=WalkForwardConfig(families=("sklearn_ridge", "broken"), n_folds=3,
                                                           params={"broken": {"blow_up": blow_up}}),
                            sentinel_family="sklearn_ridge")
    cv = cross_validate(frame, config)
    ev = evaluate_run(cv, config, bars=bars)

    broken, ridge = ev.report["models"]["broken"], ev.report["models"]["sklearn_ridge"]
    # its timestamps count as IC 0: it is not flattered by dropping them
    assert broken["ic"] == 0.0 and broken["timestamps"] == ridge["timestamps"] == broken["degenerate_timestamps"]
    assert all(w["broken"] == 0.0 for w in ev.report["fold_weights"].values())
    assert len(ev.report["warnings"]) == 3 and all(w.startswith("broken: ") for w in ev.report["warnings"])
    assert ev.oof["pred_ensemble"].is_finite().all()
    assert ev.report["models"]["ensemble"]["ic"] == pytest.approx(ridge["ic"], abs=1e-9)  # ridge alone carries it

    ensemble, _, warnings, choice = fit_candidate(frame, ev.oof, config)
    assert ensemble.weights == {"sklearn_ridge": 1.0, "broken": 0.0}
    assert warnings and warnings[0].startswith("broken: ") and "broken" not in choice
    x = frame.drop("symbol", "event_timestamp").select(ensemble.feature_names).to_numpy()
    assert np.isfinite(ensemble.predict(x)).all()


def test_stacking_never_sees_an_infinity_when_a_member_is_flat_on_some_timestamps():
    rng = np.random.default_rng(2)
    t = np.repeat(np.arange(400), 10)
    y = rng.normal(size=t.size)
    flat_sometimes = np.where(t % 10 == 0, 0.5, y + rng.normal(size=t.size))  # constant on 10% of the timestamps
    oof = pl.DataFrame({"event_timestamp": t, LABEL: y, "pred_a": flat_sometimes, "pred_b": rng.normal(size=t.size)})
    weights, _ = stack_weights(oof, ["a", "b"], label=LABEL)
    assert weights["a"] > 0.9 and sum(weights.values()) == pytest.approx(1.0)


def test_a_stack_that_does_not_beat_its_best_member_out_of_sample_gives_way_to_it():
    from models.ensemble import stack_or_best

    rng = np.random.default_rng(5)
    t = np.repeat(np.arange(300), 10)
    y = rng.normal(size=t.size)
    common = rng.normal(size=t.size)
    # Two members that repeat each other (same noise), one a little worse: stacking cannot add anything.
    past = pl.DataFrame({"event_timestamp": t, LABEL: y, "pred_good": y + 2 * common,
                         "pred_copy": y + 2 * common + 0.5 * rng.normal(size=t.size)})
    weights, choice = stack_or_best(past, {"good": 0.5, "copy": 0.5}, ["good", "copy"], label=LABEL)
    assert weights == {"good": 1.0, "copy": 0.0} and choice.startswith("good alone (the stack does not beat it significantly")
    # Two members with independent errors: their combination beats either, out of sample, and is kept.
    diverse = past.with_columns(pred_copy=pl.col(LABEL) + 2 * pl.Series(rng.normal(size=t.size)))
    weights, choice = stack_or_best(diverse, {"good": 0.5, "copy": 0.5}, ["good", "copy"], label=LABEL)
    assert weights == {"good": 0.5, "copy": 0.5} and choice.startswith("stacked (inner out-of-sample IC")
    assert stack_or_best(None, {"good": 0.5, "copy": 0.5}, ["good", "copy"], label=LABEL)[1].startswith("stacked (too little")


def test_the_evaluation_backtest_can_weigh_its_book_with_the_traders_optimiser(run, bars):
    from orchestration.portfolio import trader_weigh

    cv, plain = run
    weighed = evaluate_run(cv, FAST, bars=bars, weigh=trader_weigh("hrp", min_observations=60))
    # The signal is the same; only the book differs.
    assert {k: v["ic"] for k, v in weighed.report["models"].items()} == {k: v["ic"] for k, v in plain.report["models"].items()}
    assert not weighed.backtest.trades.select("symbol", "shares").equals(plain.backtest.trades.select("symbol", "shares"))
