"""The compact ``risk_decision`` record (trader.risk.record) keeps every fact of the first format, and both explain alike."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from click.testing import CliRunner
from trader_builders import NOW, SECTORS, account, context, prediction, submit

from trader.audit import canonical
from trader.cli import main
from trader.config import RiskLimits
from trader.domain import Side, TradingState
from trader.risk import RiskDecision, RiskEngine
from trader.risk.record import decision_checks, decision_prediction
from trader.store import TraderStore

WHY = {"base": 0.01, "contributions": {"ret_4": 0.3, "xs_resid_ret_1": -0.12}, "other": 0.05}


def first_format(decision: RiskDecision) -> dict[str, Any]:
    """What the runner wrote before the compact format: every verdict spelled out, the whole prediction copied."""
    cmd = decision.command
    return decision.to_record() | {"checks": [r.to_record() for r in decision.results], "run_id": "r1",
                                   "prediction": cmd.prediction.to_record() if cmd.prediction else None}


def stored(payload: dict[str, Any]) -> dict[str, Any]:
    return json.loads(canonical(payload))  # what a reader gets back


def a_decision(cid: str, *, with_prediction: bool = True) -> RiskDecision:
    """A buy with a SHAP explanation that passes most checks and fails two (a HALTED switch, a tight position cap)."""
    command = submit("AAA", qty=300, cid=cid, with_prediction=with_prediction)
    if command.prediction is not None:
        command = replace(command, prediction=replace(prediction("AAA"), explanation=WHY))
    engine = RiskEngine(RiskLimits(max_position_pct="0.1"), sectors=SECTORS)
    return engine.check(command, context(acct=account(100_000), state=TradingState.HALTED))


def test_a_compact_record_reads_back_to_the_first_formats_checks_and_prediction():
    decision = a_decision("al-1")
    old, new = stored(first_format(decision)), stored(decision.to_record(with_prediction=True) | {"run_id": "r1"})
    assert [c["approved"] for c in decision_checks(new)].count(False) == 2
    assert decision_checks(new) == decision_checks(old) == old["checks"]
    assert decision_prediction(new) == decision_prediction(old) == old["prediction"]
    assert {k: v for k, v in new.items() if k not in ("checks", "prediction")} == {
        k: v for k, v in old.items() if k not in ("checks", "prediction")}
    assert len(canonical(new)) < 0.6 * len(canonical(old))


def test_a_compact_record_keeps_a_prediction_for_another_symbol_and_none_without_one():
    decision = a_decision("al-2")
    other = replace(decision, command=replace(decision.command, prediction=replace(prediction("BBB"), explanation=None)))
    payload = stored(other.to_record(with_prediction=True))
    assert payload["prediction"]["symbol"] == "BBB" and decision_prediction(payload)["symbol"] == "BBB"
    assert decision_prediction(payload) == stored(other.command.prediction.to_record())
    bare = stored(a_decision("al-3", with_prediction=False).to_record(with_prediction=True))
    assert bare["prediction"] is None and decision_prediction(bare) is None
    assert decision_prediction(stored(a_decision("al-4").to_record())) is None  # an exit's record: no prediction key


def test_explain_tells_the_same_story_of_an_old_record_and_a_compact_one(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path))
    old, new = a_decision("al-old"), a_decision("al-new")
    with TraderStore(f"sqlite:///{tmp_path / 'trader' / 'sim.db'}") as store:
        store.append_audit("risk_decision", first_format(old), ts=NOW)
        store.append_audit("risk_decision", new.to_record(with_prediction=True) | {"run_id": "r1"}, ts=NOW)
        assert store.verify_audit().ok
    outputs = {}
    for cid in ("al-old", "al-new"):
        result = CliRunner().invoke(main, ["explain", cid, "--mode", "sim"])
        assert result.exit_code == 0, result.output
        outputs[cid] = result.output.replace(cid, "<cid>")
    assert outputs["al-old"] == outputs["al-new"]
    text = outputs["al-new"]
    assert "decision by run r1: buy 300 AAA" in text and "prediction  model ens:test, score +0.5000 long" in text
    assert "why         base +0.0100; ret_4 +0.3000, xs_resid_ret_1 -0.1200; other features +0.0500" in text
    assert "risk        DENIED: TRADING_HALTED" in text
    assert "NO  position_limit" in text and "ok  buying_power" in text and "ok  trading_state" not in text


def test_a_sell_that_only_reduces_is_recorded_compact_with_its_reason_for_passing():
    engine = RiskEngine(RiskLimits(), sectors=SECTORS)
    decision = engine.check(submit("AAA", Side.SELL, 50, cid="al-5"), context(acct=account(90_000, AAA=(100, 100))))
    checks = decision_checks(stored(decision.to_record(with_prediction=True)))
    assert decision.approved and all(c["approved"] and c["reason"] == "APPROVED" for c in checks)
    assert {c["check"]: c["message"] for c in checks}["max_notional"] == "reduces the position"
