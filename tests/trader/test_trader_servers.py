"""The trader on the servers profile: ``ALPHALINE_POSTGRES_URL`` puts every mode's store on PostgreSQL (a real server)."""

from __future__ import annotations

from click.testing import CliRunner
from fake_venue import PredictionServer, make_bars, write_marts_bars
from test_trader_cli import write_config

from tests.servers import count_rows
from trader.cli import main
from trader.domain import OrderStatus, TradingState
from trader.servers import database_url, ensure_database, server_store_url
from trader.store import TraderStore


def _server(postgres_url: str) -> str:
    """The server of the test's fresh database, with that database as the prefix of the stores' databases."""
    return postgres_url.replace("postgresql+psycopg://", "postgresql://")


def test_servers_profile_runs_the_sim_session_kill_and_resume_on_postgres(home, monkeypatch, postgres_url):
    monkeypatch.setenv("ALPHALINE_POSTGRES_URL", _server(postgres_url))
    url = server_store_url("sim")
    assert url == database_url(_server(postgres_url), "trader_sim")
    warehouse = database_url(_server(postgres_url), "warehouse", driver="")  # the trader's bars come from the server too
    ensure_database(warehouse)
    write_marts_bars(warehouse, make_bars(n=6))
    (home / "warehouse.duckdb").unlink()  # the fixture's embedded warehouse: not read on this profile
    run = lambda *args: CliRunner().invoke(main, list(args))  # noqa: E731
    with PredictionServer() as server:
        cfg = write_config(home, server.url)
        assert run("kill", "--reason", "drill", "--by", "alice", "--config", cfg).exit_code == 0
        halted = run("run", "--once", "--config", cfg)  # another process: the kill switch held in PostgreSQL
        assert halted.exit_code == 3 and "HALTED (drill)" in halted.stdout and server.requests == []
        assert run("resume", "--by", "bob", "--config", cfg).exit_code == 0
        first = run("run", "--mode", "sim", "--config", cfg)
        assert first.exit_code == 0 and "done: 5 cycles" in first.output, first.output  # the halted tick counted
        assert "trader_sim" in run("status", "--config", cfg).output
        assert not (home / "trader").exists()  # nothing embedded: no SQLite file was written
        with TraderStore(url) as store:
            states = [(r.payload["state"], r.payload["changed_by"]) for r in store.audit_records() if r.kind == "trading_state"]
            assert states == [("halted", "alice"), ("active", "bob")] and store.trading_state().state is TradingState.ACTIVE
            assert any(o.status is OrderStatus.FILLED for o in store.list_orders()) and store.list_fills()
            assert store.verify_audit().ok
            fills = len(store.list_fills())
        assert count_rows(url, "SELECT count(*) FROM fills") == fills

        fresh = run("run", "--fresh", "--config", cfg)  # the old store's database is renamed, never dropped
        assert fresh.exit_code == 0 and "done: 6 cycles" in fresh.output, fresh.output
        aside = fresh.output.split("moved the old sim store aside to ")[1].split()[0]
        assert count_rows(url.rsplit("/", 1)[0] + "/" + aside, "SELECT count(*) FROM fills") == fills


def _append_in_process(url: str, name: str, n: int) -> None:
    from trader_builders import NOW

    with TraderStore(url) as store:
        for i in range(n):
            store.append_audit("w", {"writer": name, "i": i}, ts=NOW)


def test_postgres_store_audit_chain_stays_linear_with_four_writer_processes(postgres_url):
    import multiprocessing

    TraderStore(postgres_url).close()
    ctx = multiprocessing.get_context("spawn")  # separate interpreters, as separate trader hosts would be
    procs = [ctx.Process(target=_append_in_process, args=(postgres_url, f"p{k}", 25)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with TraderStore(postgres_url) as store:
        result = store.verify_audit()
        writers = {r.payload["writer"] for r in store.audit_records()}
    assert result.ok and result.count == 100 and writers == {"p0", "p1", "p2", "p3"}


def test_trader_paths_names_the_server_databases_without_the_password(monkeypatch, tmp_path):
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path))
    monkeypatch.setenv("ALPHALINE_POSTGRES_URL", "postgresql://ops:hunter2@db:5432/acme")
    out = CliRunner().invoke(main, ["paths"]).output
    assert "live store: postgresql+psycopg://ops:***@db:5432/acme_trader\n" in out and "acme_trader_dry_run" in out
    assert "hunter2" not in out and str(tmp_path) not in out
