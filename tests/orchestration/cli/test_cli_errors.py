"""``alphaline`` with bad settings or arguments: one line naming the input, a non-zero exit, nothing created or lost;
and a failing run keeps its whole traceback in the run's log file."""

import datetime as dt
import subprocess
import sys
import types
from pathlib import Path

import dagster as dg
import pytest

from orchestration.cli import _as_of, _session_range, _set_aside_earlier_demo
from orchestration.errors import ConfigError
from orchestration.runner import run_job
from orchestration.settings import DEMO_AS_OF, Settings


def _cli(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    code = "from orchestration.cli import run; run()"
    full = {"ALPHALINE_HOME": str(home), "PATH": str(Path(sys.executable).parent), "HOME": str(home.parent), **env}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full, timeout=300,
                          cwd=home.parent)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("ALPHALINE_DEPLOYMENT", "prdo", "error: ALPHALINE_DEPLOYMENT='prdo': input should be 'local' or 'prod'"),
    ("ALPHALINE_MAX_REJECT_SHARE", "abc", "error: ALPHALINE_MAX_REJECT_SHARE='abc': input should be a valid number"),
    ("ALPHALINE_MARKET_START", "2024-13-01", "error: ALPHALINE_MARKET_START='2024-13-01': input should be a valid date"),
])
def test_a_bad_setting_is_one_line_naming_the_variable_and_value(tmp_path: Path, variable: str, value: str, expected: str):
    proc = _cli("status", home=tmp_path / "home", **{variable: value})
    assert proc.returncode == 2
    assert _one_line(proc).startswith(expected)
    assert not (tmp_path / "home").exists()


def test_alphaline_home_pointing_at_a_file_is_refused_and_the_file_is_untouched(tmp_path: Path):
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("keep me\n")
    for command in (["status"], ["demo", "--no-train"], ["compliance", "run", "--date", "2026-11-25"]):
        proc = _cli(*command, home=not_a_folder)
        assert proc.returncode == 2, (command, proc.stderr)
        assert f"ALPHALINE_HOME={not_a_folder}" in _one_line(proc) and "not a folder" in proc.stderr
    assert not_a_folder.read_text() == "keep me\n"


def test_status_on_an_empty_folder_says_so_and_creates_nothing(tmp_path: Path):
    proc = _cli("status", home=tmp_path / "home")
    assert proc.returncode == 2 and "no warehouse at" in _one_line(proc)
    assert list(tmp_path.iterdir()) == []


def test_demo_with_a_malformed_as_of_names_the_option(tmp_path: Path):
    proc = _cli("demo", "--as-of", "2026-02-30", home=tmp_path / "home")
    assert proc.returncode == 2 and "--as-of/--end '2026-02-30': not a date" in _one_line(proc)


# -- the pinned as-of ---------------------------------------------------------------------------------------------


def test_the_demo_window_is_pinned_and_independent_of_the_clock():
    settings = Settings(home=Path("unused"))
    assert _as_of(None, DEMO_AS_OF) == DEMO_AS_OF and _as_of("today", DEMO_AS_OF) is None
    start, end = _session_range(250, settings, DEMO_AS_OF)
    assert end == DEMO_AS_OF.isoformat() and start == "2025-11-28"  # 250 XNYS sessions back, holidays skipped
    assert _session_range(3, settings, dt.date(2026, 11, 29)) == ("2026-11-24", "2026-11-27")  # a Sunday: the Friday before


def test_an_as_of_whose_session_has_not_closed_is_refused():
    with pytest.raises(ConfigError, match="2100-01-04: that session has not closed yet"):
        _session_range(5, Settings(home=Path("unused")), dt.date(2100, 1, 4))


# -- run logs -----------------------------------------------------------------------------------------------------


def test_a_failed_run_prints_one_line_and_its_log_keeps_the_whole_traceback(settings, monkeypatch, capsys):
    @dg.asset
    def fragile() -> None:
        raise ValueError("Input X contains infinity")

    stand_in = types.ModuleType("orchestration.definitions")
    stand_in.build_definitions = lambda settings, loggers=None: dg.Definitions(
        assets=[fragile], jobs=[dg.define_asset_job("fragile_job")], loggers=loggers)
    monkeypatch.setitem(sys.modules, "orchestration.definitions", stand_in)
    monkeypatch.setattr(dg.DagsterInstance, "get", staticmethod(dg.DagsterInstance.ephemeral))
    with pytest.raises(SystemExit) as exited:
        run_job("fragile_job")
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "error: fragile: ValueError: Input X contains infinity" in err
    (log,) = (settings.home / "logs").glob("fragile_job-*.log")
    text = log.read_text()
    assert "=== step fragile failed ===" in text and 'test_cli_errors.py", line' in text and 'raise ValueError("Input X contains infinity")' in text


def test_a_demo_on_a_used_home_moves_the_earlier_state_aside_whole(tmp_path: Path):
    home = tmp_path / "home"
    (home / "archive").mkdir(parents=True)
    (home / "archive" / "manifest.jsonl").write_text("sealed\n")
    (home / "trader").mkdir()
    (home / "trader" / "sim.db").write_bytes(b"orders")
    _set_aside_earlier_demo(Settings(home=home))
    assert not home.exists()
    (aside,) = tmp_path.glob("home.previous-*")
    assert (aside / "archive" / "manifest.jsonl").read_text() == "sealed\n" and (aside / "trader" / "sim.db").read_bytes() == b"orders"


def test_a_demo_refuses_a_home_that_holds_an_account_and_touches_nothing(tmp_path: Path):
    home = tmp_path / "home"
    (home / "trader").mkdir(parents=True)
    (home / "trader" / "paper.db").write_bytes(b"paper account")
    with pytest.raises(ConfigError, match=r"holds trader stores of an account \(paper.db\)"):
        _set_aside_earlier_demo(Settings(home=home))
    assert (home / "trader" / "paper.db").read_bytes() == b"paper account" and list(tmp_path.iterdir()) == [home]
