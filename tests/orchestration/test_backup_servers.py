"""Backup and restore on the servers profile: the PostgreSQL databases (trader store, Feast's registry and offline
tables) go into the backup with pg_dump and come back with pg_restore, checked by row counts; on a real server."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from test_servers_profile import clean_env, servers_settings  # noqa: F401 (clean_env is a fixture)

from feature_repo import compute_features
from feature_repo import store as fs
from orchestration.backup import backup, restore
from orchestration.cli import main
from orchestration.errors import ConfigError
from tests.features.synthetic_bars import BAR, feature_bars
from trader.servers import database_url, ensure_database
from trader.store import TraderStore

pytestmark = pytest.mark.servers

NOW = dt.datetime(2026, 12, 7, 4, 0, tzinfo=dt.UTC)


@pytest.fixture
def profile(clean_env, postgres_server, postgres_url, redis_url, tmp_path):  # noqa: F811  # noqa: F811
    """A servers-profile home: trader sim store and Feast offline tables on PostgreSQL, a report file on disk."""
    from pgserver._commands import POSTGRES_BIN_PATH

    clean_env.setenv("ALPHALINE_PG_BINDIR", str(POSTGRES_BIN_PATH))  # the system's pg_dump may be older than 16
    settings = servers_settings(clean_env, postgres_url, redis_url)  # creates <prefix>_dagster and <prefix>_feast
    server, home = settings.postgres_url.get_secret_value(), settings.home
    prefix = server.rsplit("/", 1)[1]  # the fresh test database's name is the profile's prefix
    (home / "reports").mkdir(parents=True, exist_ok=True)
    (home / "reports" / "note.csv").write_text("x\n")
    sim = database_url(server, "trader_sim")
    ensure_database(sim)
    with TraderStore(sim) as store:
        for i in range(5):
            store.append_audit("drill", {"i": i}, ts=NOW)
    features = compute_features(feature_bars(n_symbols=2, first=dt.date(2024, 6, 3), last=dt.date(2024, 6, 7)), bar_length=BAR)
    fs.write_features(features, fs.offline_dir(home), tables=fs.offline_tables(fs.load_config(home, "prod")))
    aside = f"{prefix}_trader_replaced_20260101t000000z"  # a --fresh store moved aside: not part of the profile
    postgres_server.create_database(aside)
    yield {"server": server, "prefix": prefix, "home": home, "sim": sim, "features": features}
    with psycopg.connect(postgres_server.url(driver=""), autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{prefix}_%",))]
    for name in names:
        postgres_server.drop_database(name)


def _state(p: dict) -> dict:
    with TraderStore(p["sim"]) as store:
        audit = [(r.seq, r.kind, r.payload) for r in store.audit_records()]
        ok = store.verify_audit().ok
    tables = fs.offline_tables(fs.load_config(p["home"], "prod"))
    return {"audit": audit, "chain_ok": ok, "bar_ret": tables.read("bar_ret").sort("symbol", "event_timestamp"),
            "note": (p["home"] / "reports" / "note.csv").read_text()}


def _drop_profile_databases(postgres_server, prefix: str) -> None:
    for store in ("trader_sim", "feast", "dagster"):
        postgres_server.drop_database(f"{prefix}_{store}")


def test_servers_backup_dumps_every_profile_database_and_restore_brings_back_the_same_rows(profile, postgres_server, tmp_path):
    before = _state(profile)
    runner = CliRunner()
    made = runner.invoke(main, ["backup", "--to", str(tmp_path / "backups")])
    assert made.exit_code == 0, made.output
    assert "3 PostgreSQL database(s) dumped (pg_dump)" in made.output and "_replaced_" not in made.output
    folder = Path(made.output.splitlines()[0].removeprefix("backup "))
    assert sorted(p.name for p in (folder / "postgres").iterdir()) == ["dagster.dump", "feast.dump", "trader_sim.dump"]

    shutil.rmtree(profile["home"])  # the disk and the databases are gone
    _drop_profile_databases(postgres_server, profile["prefix"])
    restored = runner.invoke(main, ["restore", str(folder)])
    assert restored.exit_code == 0, restored.output
    assert "restored 3 PostgreSQL database(s) (pg_restore), row counts checked: dagster, feast, trader_sim" in restored.output
    after = _state(profile)
    assert after["audit"] == before["audit"] and after["chain_ok"] and after["note"] == before["note"]
    assert after["bar_ret"].equals(before["bar_ret"]) and after["bar_ret"].height == profile["features"].height


def test_servers_restore_refuses_a_missing_server_an_altered_dump_or_an_occupied_database_before_writing(profile):
    made = backup(profile["home"], profile["home"].parent / "b", now=NOW, postgres=profile["server"])
    target = profile["home"].parent / "new-home"
    with pytest.raises(ConfigError, match=r"holds PostgreSQL databases \(dagster, feast, trader_sim\): set ALPHALINE_POSTGRES_URL"):
        restore(made.path, target)
    with pytest.raises(ConfigError, match=rf"^database {profile['prefix']}_feast: not empty; .* add --replace"):
        restore(made.path, target, postgres=profile["server"])
    dump = made.path / "postgres" / "trader_sim.dump"
    good = dump.read_bytes()
    dump.write_bytes(good[:-1] + b"!")
    with pytest.raises(ConfigError, match=r"postgres/trader_sim.dump: checksum differs from the manifest"):
        restore(made.path, target, postgres=profile["server"], replace=True)
    assert not target.exists()  # every refusal came before anything was written

    dump.write_bytes(good)
    _, problems = restore(made.path, target, postgres=profile["server"], replace=True)
    assert problems == []
    with psycopg.connect(profile["server"].rsplit("/", 1)[0] + "/postgres") as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert any(n.startswith(f"{profile['prefix']}_feast_replaced_") for n in names)  # moved aside, never dropped


def test_backup_without_pg_dump_is_one_line_and_leaves_no_backup(monkeypatch, tmp_path):
    monkeypatch.setenv("ALPHALINE_PG_BINDIR", str(tmp_path / "bin"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "note.csv").write_text("x\n")
    with pytest.raises(ConfigError, match=rf"^ALPHALINE_PG_BINDIR={tmp_path / 'bin'}: no executable pg_dump there$"):
        backup(tmp_path / "home", tmp_path / "b", now=NOW, postgres="postgresql://alphaline@127.0.0.1:5432/alphaline")
    assert list((tmp_path / "b").iterdir()) == []
