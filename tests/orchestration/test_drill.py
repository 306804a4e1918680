"""Fault drills: each fault really fires against a sandbox home, and the platform survives it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestration import drill as drills
from orchestration.cli import main
from orchestration.drill import DrillResult, run_drills


def _one(tmp_path: Path, name: str) -> DrillResult:
    (result,) = run_drills(tmp_path, [name])
    assert result.name == name
    return result


def test_drill_service_down_halts_sends_nothing_and_alerts_once(tmp_path):
    result = _one(tmp_path, "service_down")
    assert result.survived, result.facts
    assert result.facts[0].startswith("trader run exit 3: ") and "prediction service failed 3 cycles in a row" in result.facts[0]
    assert result.facts[1] == "orders sent: 0; alerts delivered: 1 (Alphaline trader sim-2024-03-05: HALTED)"


def test_drill_broker_5xx_loses_answers_and_never_sends_an_order_twice(tmp_path):
    result = _one(tmp_path, "broker_5xx")
    assert result.survived, result.facts
    lost, refused = _counts(result.facts[0])
    assert lost > 0 and refused > 0  # the fault fired both ways
    assert result.facts[1].endswith("all in the store: yes") and "one order per client_order_id: yes" in result.facts


def _counts(line: str) -> tuple[int, int]:
    words = line.replace(",", "").split()
    return int(words[words.index("answers") - 1]), int(words[words.index("refused") - 1])


@pytest.mark.parametrize("name", ["disk_full", "killed_trader"])
def test_drill_the_trader_stopped_mid_session_resumes_and_decides_every_tick_once(tmp_path, name):
    result = _one(tmp_path, name)
    assert result.survived, result.facts
    assert "26 cycles" in result.facts[-4] and result.facts[-1].startswith("audit chain: intact")
    if name == "disk_full":
        assert result.facts[0].startswith("with a full disk: exit 1 after ") and "disk I/O error" in result.facts[0]


@pytest.mark.slow
def test_drill_corrupt_bar_batch_is_refused_and_quarantined(tmp_path):
    result = _one(tmp_path, "corrupt_bar_batch")
    assert result.survived, result.facts
    assert "imported_bars:reject_share_within_limit" in result.facts[0] and "ohlc_inconsistent" in result.facts[1]
    assert result.facts[2].endswith("marts.bars rows from the batch: 0")


def test_drill_cli_prints_what_was_survived_and_fails_when_a_drill_was_not(tmp_path, monkeypatch):
    runner = CliRunner()
    ok = runner.invoke(main, ["drill", "--only", "service_down", "--keep", str(tmp_path / "kept")])
    assert ok.exit_code == 0, ok.output
    assert "service_down       survived  — prediction service refuses connections" in ok.output
    assert ok.output.strip().endswith("1 of 1 drills survived") and (tmp_path / "kept" / "service_down").is_dir()

    broken = drills.Drill("service_down", "a drill whose check fails", lambda root: DrillResult("service_down", False, ["x"]))
    monkeypatch.setattr(drills, "DRILLS", (broken,))
    failed = runner.invoke(main, ["drill"])
    assert failed.exit_code == 1 and "NOT survived" in failed.output and "not: service_down" in failed.output


def test_drill_cli_unknown_name_is_one_line(tmp_path):
    code = "from orchestration.cli import run; run()"
    proc = subprocess.run([sys.executable, "-c", code, "drill", "--only", "fire"], capture_output=True, text=True,
                          timeout=120, env={"ALPHALINE_HOME": str(tmp_path / "h"), "PATH": str(Path(sys.executable).parent)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("error: --only 'fire': unknown drill(s) fire; known: service_down, broker_5xx, disk_full, "
                                   "killed_trader, corrupt_bar_batch")
