"""The trader decides on the bar that has just closed, in a replay and live alike (issue: "it decides one bar late").

Live, a cycle fires a little after each bar boundary, but the intraday features job lands the
bar's features in the online store only about a minute later. :class:`OnlineStore` plays that
store on a fake clock; the same predictions are asked ``as_of`` each close in a replay (the
offline store). The two runs must decide on identical inputs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from fake_venue import OPEN, STEP, SYMBOLS, FakeBroker, _unit, config, make_bars

from trader.brokers.bars import InMemoryBars
from trader.domain import Symbol
from trader.metrics import TraderMetrics
from trader.predictions import Prediction, PredictionBatch
from trader.runner import Runner, last_closes, live_ticks, replay_ticks
from trader.store import TraderStore

BARS = 8


class FakeClock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class OnlineStore:
    """Features of the bar closing at ``c`` are knowable at ``c`` (offline, ``as_of``) and online from ``c + lag``."""

    def __init__(self, clock: FakeClock, *, lag: dt.timedelta, last_close: dt.datetime):
        self.clock, self.lag, self.last_close = clock, lag, last_close
        self.asked: list[dt.datetime | None] = []

    def _newest_close(self, as_of: dt.datetime | None) -> dt.datetime:
        if as_of is not None:
            return min(as_of, self.last_close)
        closes = OPEN + STEP * ((self.clock() - self.lag - OPEN) // STEP)
        return min(closes, self.last_close)

    def predict(self, symbols: Sequence[Symbol], *, as_of: dt.datetime | None = None) -> PredictionBatch:
        self.asked.append(as_of)
        close = self._newest_close(as_of)
        scores = {s: _unit(s, close.isoformat()) for s in symbols}
        preds = tuple(Prediction(symbol=s, score=x, direction="long" if x > 0 else "short", confidence=0.6,
                                 feature_ts=close, stale=False, model_version="ens:test") for s, x in scores.items())
        return PredictionBatch("ens:test", preds)


def _inputs(store: TraderStore) -> list[tuple[str, list[tuple[str, str, float]]]]:
    """Per cycle: the decision time and every (symbol, feature_ts, score) the orders were sized on."""
    return [(str(r.ts), [(p["symbol"], str(p["feature_ts"]), p["score"]) for p in r.payload["predictions"]])
            for r in store.audit_records() if r.kind == "prediction_batch"]


def _replay(store: TraderStore, bars) -> list:
    runner = Runner(config=config(), store=store, broker=FakeBroker(bars=bars), predictor=OnlineStore(
        FakeClock(OPEN), lag=dt.timedelta(0), last_close=bars[-1].ts + STEP), run_id="run")
    broker = runner.broker
    return runner.run(replay_ticks(bars), before_cycle=lambda t: broker.advance_to(t.ts))


def _live(store: TraderStore, bars, *, lag: dt.timedelta, cfg=None, observers=()) -> tuple[list, OnlineStore]:
    clock = FakeClock(OPEN + STEP + dt.timedelta(seconds=30))  # the first tick: 30 s after the first bar closes
    online = OnlineStore(clock, lag=lag, last_close=bars[-1].ts + STEP)
    broker = FakeBroker(bars=bars)
    feed = InMemoryBars(bars)
    ticks = live_ticks(lambda at: last_closes(feed, [str(s) for s in SYMBOLS], at), clock=clock, sleep=clock.sleep)
    runner = Runner(config=cfg or config(), store=store, broker=broker, predictor=online, run_id="run", clock=clock,
                    sleep=clock.sleep, observers=observers)
    return runner.run(ticks, before_cycle=lambda t: broker.advance_to(t.ts), limit=BARS), online


@pytest.fixture()
def two_stores(tmp_path):
    with TraderStore(f"sqlite:///{tmp_path / 'sim.db'}") as sim, TraderStore(f"sqlite:///{tmp_path / 'paper.db'}") as paper:
        yield sim, paper


def test_live_cycles_wait_for_the_just_closed_bar_and_decide_on_the_same_inputs_as_the_replay(two_stores):
    sim, paper = two_stores
    bars = make_bars(n=BARS)
    replayed = _replay(sim, bars)
    live, online = _live(paper, bars, lag=dt.timedelta(seconds=80))
    assert [r.ts for r in live] == [r.ts for r in replayed] == [OPEN + STEP * (k + 1) for k in range(BARS)]
    assert _inputs(paper) == _inputs(sim)
    for ts, rows in _inputs(paper):  # every cycle on the bar that closed at its own time
        assert {dt.datetime.fromisoformat(f) for _, f, _ in rows} == {dt.datetime.fromisoformat(ts)}
    assert all(not r.refused and r.behind == 0 for r in live)
    assert [(r.submitted, r.fills, r.equity) for r in live] == [(r.submitted, r.fills, r.equity) for r in replayed]
    assert sum(r.submitted for r in live) > 0
    assert online.asked.count(None) > BARS  # it had to ask again while the bar's features were on their way


def test_without_the_gate_live_decides_one_bar_late(two_stores, tmp_path):
    """The failure the gate prevents: the same live run, not waiting, sizes every cycle on the bar before."""
    sim, paper = two_stores
    bars = make_bars(n=BARS)
    _replay(sim, bars)
    _live(paper, bars, lag=dt.timedelta(seconds=80), cfg=config(prediction={"require_current_bar": False}))
    late = _inputs(paper)
    assert late != _inputs(sim)
    assert all(dt.datetime.fromisoformat(rows[0][1]) == dt.datetime.fromisoformat(ts) - STEP for ts, rows in late)


def test_a_cycle_whose_bar_never_reaches_the_online_store_is_refused_audited_and_counted(two_stores):
    _, paper = two_stores
    metrics = TraderMetrics()
    reports, _ = _live(paper, make_bars(n=BARS), lag=dt.timedelta(minutes=10), observers=[metrics])
    # The deadline (4 minutes) passes before the 10-minute-late features land: every cycle refuses, none orders.
    assert all(r.refused and r.submitted == 0 for r in reports)
    assert "refused: no features for the bar closing at" in reports[0].status
    refusals = [r for r in paper.audit_records() if r.kind == "cycle_refused"]
    assert len(refusals) == len(reports)
    assert dt.datetime.fromisoformat(str(refusals[0].payload["newest_feature_ts"])) < reports[0].ts
    assert metrics.refused._value.get() == len(reports)


def test_a_symbol_whose_features_lag_is_held_not_traded_on_its_older_bar(tmp_path):
    class OneLagging(OnlineStore):
        def predict(self, symbols, *, as_of=None):
            batch = super().predict(symbols, as_of=as_of)
            late = [p if p.symbol != "AAA" else Prediction(**{**p.__dict__, "feature_ts": p.feature_ts - STEP})
                    for p in batch.predictions]
            return PredictionBatch(batch.model_version, tuple(late))

    bars = make_bars(n=4)
    with TraderStore(f"sqlite:///{tmp_path / 's.db'}") as store:
        runner = Runner(config=config(), store=store, broker=FakeBroker(bars=bars), run_id="run",
                        predictor=OneLagging(FakeClock(OPEN), lag=dt.timedelta(0), last_close=bars[-1].ts + STEP))
        reports = runner.run(replay_ticks(bars), before_cycle=lambda t: runner.broker.advance_to(t.ts))
        assert all(r.behind == 1 and not r.refused for r in reports)
        assert not any(o.symbol == "AAA" for o in store.list_orders())
        assert any(o.symbol != "AAA" for o in store.list_orders())
