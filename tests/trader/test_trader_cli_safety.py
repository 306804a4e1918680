"""The CLI never loses a record by accident: ``run --fresh`` checks first and moves aside, read commands create
nothing, and a run that ends HALTED fails so that a scheduler notices."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fake_venue import DAY, PredictionServer
from test_trader_cli import cli, write_config

from trader.compliance import WormArchive, verify_audit_trail
from trader.compliance.audit_check import record_day
from trader.store import TraderStore


def error_line(result, *, code: int) -> str:
    """The command failed with ``code`` and exactly one line on stderr, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


def sim_db(home: Path) -> Path:
    return home / "trader" / "sim.db"


def snapshot(db: Path) -> tuple:
    """What must survive: orders, fills, the audit chain (and that it still verifies)."""
    assert db.is_file()
    with TraderStore(f"sqlite:///{db}") as store:
        return (len(store.list_orders()), len(store.list_fills()), store.audit_head(), store.verify_audit().ok)


def seal(home: Path, db: Path, day: dt.date) -> None:
    """Seal ``day`` of the store at ``db`` as the EOD ``seal_day`` does (orchestration/defs/compliance/eod.py):
    ``audit_verification.json`` of the day with meta ``audit_head``, the chain head through the day."""
    with TraderStore(f"sqlite:///{db}") as store:
        through = [r for r in store.audit_records() if record_day(r) <= day]
    verification = verify_audit_trail(through, day=day)
    WormArchive(home / "archive").put(verification.dumps(), name="audit_verification.json", date=day,
                                      meta={"audit_head": {"count": verification.head.count, "hash": verification.head.hash}})


@pytest.fixture
def traded(home):
    """A sim store that traded the warehouse's day; returns the config path and the store's snapshot."""
    with PredictionServer() as server:
        cfg = write_config(home, server.url)
        result = cli("run", "--mode", "sim", "--config", cfg)
    assert result.exit_code == 0 and "done: 6 cycles" in result.stdout, result.output
    before = snapshot(sim_db(home))
    assert before[1] > 0  # it has fills to lose
    return cfg, before


def files_beside(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.iterdir())


# -- run --fresh ----------------------------------------------------------------------------------
def test_fresh_with_a_day_without_bars_fails_before_touching_the_store(home, traded):
    cfg, before = traded
    result = cli("run", "--mode", "sim", "--fresh", "--date", "2024-07-12", "--config", cfg)
    assert "marts.bars has no 15m bars on 2024-07-12" in error_line(result, code=1)
    assert snapshot(sim_db(home)) == before and files_beside(sim_db(home)) == ["sim.db"]


def test_fresh_without_a_warehouse_fails_before_touching_the_store(home, traded):
    cfg, before = traded
    (home / "warehouse.duckdb").unlink()
    result = cli("run", "--mode", "sim", "--fresh", "--date", DAY.isoformat(), "--config", cfg)
    assert "no warehouse here" in error_line(result, code=1)
    assert snapshot(sim_db(home)) == before and files_beside(sim_db(home)) == ["sim.db"]


@pytest.mark.parametrize("override", [[], ["--discard-sealed", "2024-03-04"]])
def test_fresh_refuses_a_store_holding_sealed_days_unless_the_override_names_them(home, traded, override):
    cfg, before = traded
    seal(home, sim_db(home), DAY)
    result = cli("run", "--mode", "sim", "--fresh", *override, "--config", cfg)
    line = error_line(result, code=2)
    assert "holds days sealed into the WORM archive (2024-03-05)" in line and "add --discard-sealed 2024-03-05" in line
    assert snapshot(sim_db(home)) == before and files_beside(sim_db(home)) == ["sim.db"]
    assert WormArchive(home / "archive").verify().ok


def test_fresh_with_the_override_moves_the_old_store_aside_and_the_new_one_says_so(home, traded):
    cfg, before = traded
    seal(home, sim_db(home), DAY)
    with PredictionServer() as server:
        cfg = write_config(home, server.url)
        result = cli("run", "--mode", "sim", "--fresh", "--discard-sealed", "2024-03-05", "--config", cfg)
    assert result.exit_code == 0 and "done: 6 cycles" in result.stdout, result.output
    moved = result.stdout.splitlines()[0]
    assert moved.startswith(f"--fresh: moved the old sim store aside to {sim_db(home)}.replaced-")
    assert moved.endswith("(it holds sealed days 2024-03-05)")
    aside = Path(moved.split(" aside to ")[1].split(" (")[0])
    assert snapshot(aside) == before  # every order, fill and audit record of the old store, intact
    with TraderStore(f"sqlite:///{sim_db(home)}") as store:
        opened = store.latest_audit("sim_session")
    assert opened is not None and opened.payload["replaces"] == {"store": str(aside), "sealed_days": ["2024-03-05"]}


def test_fresh_ignores_the_same_day_sealed_from_another_store(home, traded):
    cfg, _ = traded
    live = home / "trader" / "trader.db"
    with TraderStore(f"sqlite:///{live}") as store:
        store.append_audit("note", {"what": "the live account traded that day too"}, ts=dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC))
    seal(home, live, DAY)
    with PredictionServer() as server:
        cfg = write_config(home, server.url)
        result = cli("run", "--mode", "sim", "--fresh", "--config", cfg)
    assert result.exit_code == 0, result.output
    assert "moved the old sim store aside" in result.stdout and "sealed" not in result.stdout


def test_fresh_refuses_when_the_archive_cannot_be_read(home, traded):
    cfg, before = traded
    (home / "archive").mkdir()
    (home / "archive" / "manifest.jsonl").write_text("not json\n")
    line = error_line(cli("run", "--mode", "sim", "--fresh", "--config", cfg), code=1)
    assert "cannot read the WORM archive" in line and "the store was left alone" in line
    assert snapshot(sim_db(home)) == before


@pytest.mark.parametrize(("args", "expected"), [
    (["--discard-sealed", "2024-03-05"], "--discard-sealed applies with --fresh only"),
    (["--fresh", "--discard-sealed", "yesterday"], "--discard-sealed: 'yesterday' is not a list of YYYY-MM-DD days"),
])
def test_discard_sealed_misuse_is_a_usage_error(home, traded, args, expected):
    cfg, before = traded
    assert expected in error_line(cli("run", "--mode", "sim", *args, "--config", cfg), code=2)
    assert snapshot(sim_db(home)) == before


# -- read commands create nothing -----------------------------------------------------------------
@pytest.mark.parametrize(("args", "mode"), [(["status"], "sim"), (["positions"], "sim"), (["orders", "--working"], "sim"),
                                            (["explain", "al-x"], "sim"), (["status", "--mode", "paper"], "paper")])
def test_read_commands_without_a_store_create_nothing(tmp_path, monkeypatch, args, mode):
    monkeypatch.delenv("ALPHALINE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    line = error_line(cli(*args), code=1)
    store = tmp_path.resolve() / ".alphaline" / "trader" / f"{mode}.db"
    assert line.endswith(f"no {mode} store at {store}: nothing has run in this mode yet (is ALPHALINE_HOME set?)")
    assert list(tmp_path.iterdir()) == []


def test_explain_of_an_unknown_order_in_an_existing_store(home):
    cfg = write_config(home, "http://127.0.0.1:9")
    assert cli("kill", "--reason", "x", "--config", cfg).exit_code == 0  # a write command: it may create the store
    assert "no order 'al-nope'" in error_line(cli("explain", "al-nope", "--config", cfg), code=1)


def test_read_commands_keep_working_on_a_store_url_that_is_not_a_file(home):
    cfg = write_config(home, "http://127.0.0.1:9", store_url="sqlite://")
    result = cli("status", "--config", cfg)
    assert result.exit_code == 0 and "state:     ACTIVE" in result.stdout, result.output


# -- a run that ends HALTED fails ---------------------------------------------------------------------
def test_run_that_ends_halted_exits_3_with_the_reason_and_keeps_its_records(home):
    with PredictionServer() as server:
        cfg = write_config(home, server.url)
        assert cli("kill", "--reason", "feed looks wrong", "--by", "alice", "--config", cfg).exit_code == 0
        result = cli("run", "--once", "--config", cfg)
    line = error_line(result, code=3)
    assert "run ended HALTED since " in line and line.endswith("by alice: feed looks wrong (`trader resume --by NAME` after checking)")
    assert result.stdout.splitlines()[-1].startswith("done: 1 cycles, 0 orders, 0 fills;")
    assert result.stdout.splitlines()[-1].endswith("state halted")
    with TraderStore(f"sqlite:///{sim_db(home)}") as store:
        assert store.latest_audit("cycle") is not None and store.verify_audit().ok
    assert "3 the run ended with trading HALTED" in " ".join(cli("run", "--help").stdout.split())  # documented
