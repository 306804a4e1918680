"""Backup → wipe → restore of a whole ALPHALINE_HOME (warehouse, trader store, Feast, model store, WORM archive),
after which `alphaline compliance verify` passes; altered backups, busy warehouses and occupied homes are refused."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from test_compliance_pipeline import MON, TUE, run_day
from test_compliance_pipeline import home as compliance_home  # noqa: F401 (a fixture)

from orchestration.backup import MANIFEST, backup, restore
from orchestration.cli import main
from orchestration.errors import ConfigError
from tests.serving.serving_world import build_world
from trader.store import TraderStore


@pytest.fixture
def full_home(compliance_home):  # noqa: F811
    """Two sealed compliance days, a trader store, a warehouse, Feast (offline, registry, online) and a production model."""
    assert run_day(compliance_home, MON).success and run_day(compliance_home, TUE).success
    build_world(compliance_home.home, lag_bars=0)
    return compliance_home


def _state(home: Path) -> dict:
    from models.registry import Registry

    with TraderStore(f"sqlite:///{home / 'trader' / 'trader.db'}") as store:
        fills = [f.to_record() for f in store.list_fills()]
        audit = store.audit_head()
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    bars = con.sql("select count(*), sum(close) from marts.bars").fetchone()
    con.close()
    archived = sorted(p.relative_to(home).as_posix() for p in (home / "archive").rglob("*") if p.is_file())
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (home / "archive" / "objects").rglob("*") if p.is_file()}
    return {"fills": fills, "audit": audit, "bars": bars, "archive": archived, "object_modes": modes,
            "production": Registry(home).production(),
            "offline": sorted(p.name for p in (home / "feast" / "offline").glob("*.parquet"))}


def test_backup_wipe_restore_then_compliance_verify_passes(full_home, tmp_path):
    home = full_home.home
    before = _state(home)
    runner = CliRunner()
    made = runner.invoke(main, ["backup", "--to", str(tmp_path / "backups")])
    assert made.exit_code == 0, made.output
    folder = Path(made.output.splitlines()[0].removeprefix("backup "))
    assert folder.parent == tmp_path / "backups" and (folder / MANIFEST).is_file()
    assert "1 DuckDB and " in made.output

    shutil.rmtree(home)  # the disk is gone
    restored = runner.invoke(main, ["restore", str(folder)])
    assert restored.exit_code == 0, restored.output
    assert "OK: every file matched its checksum, every database opens, the WORM archive verifies" in restored.output
    assert "2 sealed day(s)" in restored.output

    verified = runner.invoke(main, ["compliance", "verify"])
    assert verified.exit_code == 0 and "OK: nothing was altered" in verified.output, verified.output
    after = _state(home)
    assert after == before and after["object_modes"] == {0o444} and after["production"] is not None


def test_restore_refuses_an_altered_backup_before_touching_the_home(full_home, tmp_path):
    made = backup(full_home.home, tmp_path / "b", now=_now())
    victim = next(e for e in made.entries if e.path.startswith("archive/objects/"))
    file = made.path / victim.path
    file.chmod(0o644)
    file.write_bytes(file.read_bytes()[:-1] + b"!")
    target = tmp_path / "new-home"
    with pytest.raises(ConfigError, match=rf"^{made.path}: {victim.path}: checksum differs from the manifest"):
        restore(made.path, target)
    assert not target.exists()


def test_restore_into_an_occupied_home_needs_replace_and_keeps_the_old_one(full_home, tmp_path):
    made = backup(full_home.home, tmp_path / "b", now=_now())
    with pytest.raises(ConfigError, match="not empty; restore into an empty home, or add --replace"):
        restore(made.path, full_home.home)
    (full_home.home / "reports" / "note.txt").write_text("kept")
    _, problems = restore(made.path, full_home.home, replace=True, now=_now())
    assert problems == [] and not (full_home.home / "reports" / "note.txt").exists()
    aside = full_home.home.with_name(f"{full_home.home.name}.replaced-20261207T040000Z")
    assert (aside / "reports" / "note.txt").read_text() == "kept"


def test_backup_of_a_warehouse_busy_with_a_writer_is_one_line_and_leaves_no_backup(full_home, tmp_path):
    code = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); c.execute('create table t(x int)'); "
            "print('ready', flush=True); time.sleep(60)")
    writer = subprocess.Popen([sys.executable, "-c", code, str(full_home.warehouse_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        with pytest.raises(ConfigError, match=r"warehouse.duckdb: cannot take a consistent snapshot, a process is writing it"):
            backup(full_home.home, tmp_path / "b", now=_now())
    finally:
        writer.kill()
        writer.wait(timeout=10)
    assert list((tmp_path / "b").iterdir()) == []  # no half backup left to pass for a whole one


def test_backup_and_restore_bad_input_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="nothing to back up"):
        backup(tmp_path / "empty", tmp_path / "b", now=_now())
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "x").write_text("1")
    with pytest.raises(ConfigError, match="inside ALPHALINE_HOME"):
        backup(tmp_path / "h", tmp_path / "h" / "backups", now=_now())
    with pytest.raises(ConfigError, match=r"not a complete backup \(no MANIFEST.json\)"):
        restore(tmp_path / "h", tmp_path / "new")


def _now():
    import datetime as dt

    return dt.datetime(2026, 12, 7, 4, 0, tzinfo=dt.UTC)
