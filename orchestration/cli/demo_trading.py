"""The demo's last act: serve the production ensemble, trade the held-out session, close the day.

1. ``bentoml serve serving.service:Ensemble`` on a free local port (a real subprocess);
   ``/predict`` for the whole universe and ``/model`` are printed.
2. ``trader run --mode sim --fresh`` replays the newest session — the one training held
   out — asking the service for scores ``as_of`` each bar, through the risk engine, to the
   simulated broker; its status and positions are printed, and ``trading_status_job`` records
   the deployment and the session in Dagster (``serving_deployment``, ``trader_session``).
3. ``alphaline compliance run --trader sim --allow-short`` closes that day: tax lots, wash sales,
   Form 8949, the audit trail check and the WORM archive.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
import yaml

from orchestration.settings import Settings

NEW_YORK = ZoneInfo("America/New_York")


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def trader_config(settings: Settings, url: str) -> Path:
    """The example ``trader.yaml`` with the prediction service at ``url``, written under ``ALPHALINE_HOME/trader``."""
    import trader

    example = Path(trader.__file__).with_name("trader.example.yaml")
    config: dict[str, Any] = yaml.safe_load(example.read_text())
    config["universe"] = _universe(settings)  # the demo's own symbols: `--symbols` may ask for fewer than 48
    config["prediction"]["url"] = url
    config["prediction"]["timeout_s"] = 30  # as_of predictions run Feast's point-in-time join on each call
    if settings.market == "crypto":  # long only (no crypto shorts), fractional coins; the market never closes
        config["sizing"].update(mode="long_only", k=2, fractional=True, qty_decimals=4, min_order_notional=10)
    path = settings.home / "trader" / "demo.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _universe(settings: Settings) -> dict[str, Any]:
    """The symbols the demo ingested and their sectors (``raw.symbols``), as ``trader.yaml``'s ``universe``."""
    from orchestration.warehouse import Warehouse

    with Warehouse.for_settings(settings).connect(read_only=True) as con:
        rows = con.fetchall("select symbol, lower(coalesce(sector, 'other')) from raw.symbols order by symbol")
    sectors: dict[str, list[str]] = {}
    for symbol, sector in rows:
        sectors.setdefault(sector, []).append(symbol)
    return {"symbols": [symbol for symbol, _ in rows], "sectors": sectors}


def _trader(*args: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALPHALINE_HOME": str(settings.home)}
    return subprocess.run([_bin("trader"), *args], capture_output=True, text=True, check=False, env=env, timeout=1800)


def _print_predictions(answer: dict[str, Any]) -> None:
    preds = answer.get("predictions", [])
    ranked = sorted(preds, key=lambda p: p["score"], reverse=True)
    click.echo(f"  /predict: {len(preds)} symbols from {answer.get('model_version')}")
    for p in ranked[:3] + ranked[-3:]:
        click.echo(f"    {p['symbol']:<5} score {p['score']:+.5f}  {p['direction']:<5}  confidence {p['confidence']:.2f}  "
                   f"features at {p['feature_ts']}{'  STALE' if p.get('stale') else ''}")
    why = ranked[0].get("explanation") if ranked else None
    if why:
        parts = ", ".join(f"{name} {value:+.5f}" for name, value in why["contributions"].items())
        click.echo(f"  why {ranked[0]['symbol']} (SHAP, \"explain\": 3): base {why['base']:+.5f}; {parts}; other {why['other']:+.5f}")
        families = ", ".join(f"{name} {value:+.5f}" for name, value in list(why.get("families", {}).items())[:4])
        click.echo(f"    by feature family: {families}")


def serve_trade_and_close(settings: Settings) -> dict[str, Any]:
    """Run the three steps; returns what the summary needs (the day traded, the trader's output)."""
    import httpx

    from serving.demo import free_port, running, universe

    click.echo("\nServing: bentoml serve serving.service:Ensemble (production ensemble) ...")
    with running(settings.home, free_port(), log=settings.home / "logs" / "serve.log") as server:
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            answer = client.post("/predict", json={"symbols": universe(settings.home), "allow_stale": True, "explain": 3})
            card = client.get("/model").json()
        click.echo(f"  {server.url}  GET /model → {card.get('version', card.get('model_version', '?'))}")
        if answer.status_code != 200:
            raise click.ClickException(f"/predict answered {answer.status_code}: {answer.text[:200]}")
        _print_predictions(answer.json())
        config = trader_config(settings, server.url)
        click.echo("\nTrading: trader run --mode sim on the held-out session (predictions as_of each bar) ...")
        run = _trader("run", "--mode", "sim", "--fresh", "--config", str(config), settings=settings)
        if run.returncode != 0:
            raise click.ClickException(f"trader run failed: {(run.stderr or run.stdout).strip().splitlines()[-1:]}")
        click.echo("  " + "\n  ".join(run.stdout.strip().splitlines()[-8:]))
        record_trading_status(settings, server.url)
    for command in (["status", "--mode", "sim"], ["positions", "--mode", "sim"], ["track", "--mode", "sim"],
                    *_first_order(settings)):
        out = _trader(*command, settings=settings)
        click.echo("  " + "\n  ".join((out.stdout or out.stderr).strip().splitlines()[:16]))
    return {"trader": run.stdout}


def _first_order(settings: Settings) -> list[list[str]]:
    """``trader explain`` of the session's first order sent on a prediction (none if nothing was sent)."""
    from trader.store import TraderStore

    with TraderStore(_sim_store_url(settings)) as store:
        orders = store.list_orders()
    return [["explain", orders[0].client_order_id, "--mode", "sim"]] if orders else []


def _sim_store_url(settings: Settings) -> str:
    """The sim store ``trader run --mode sim`` used: ``trader/sim.db``, or its database on the servers profile's PostgreSQL."""
    from trader.servers import server_store_url

    return server_store_url("sim") or f"sqlite:///{settings.home / 'trader' / 'sim.db'}"


def record_trading_status(settings: Settings, url: str) -> None:
    """``trading_status_job`` while the service still runs: what it serves and what the sim session did, in Dagster."""
    from orchestration.defs.trader.schedules import TRADING_STATUS_JOB
    from orchestration.resources import TradingResource
    from orchestration.runner import run_job

    click.echo("\nRecording the deployment and the session in Dagster (serving_deployment, trader_session, session_tracking) ...")
    trading = TradingResource.for_home(settings.home, mode="sim", service_url=url)
    run_job(TRADING_STATUS_JOB, run_config={"resources": {"trading": {"config": trading.model_dump()}}})


def close_the_day(settings: Settings) -> None:
    """``alphaline compliance run --date <the traded session> --trader sim`` in this process."""
    from orchestration.cli.compliance import run as compliance_run
    from trader.store import TraderStore

    store = TraderStore(_sim_store_url(settings))
    fills = store.list_fills()
    if not fills:
        click.echo("\nCompliance: the simulated session had no fills; nothing to close")
        return
    day = settings.profile.trading_day(max(f.ts for f in fills))
    click.echo(f"\nCompliance: EOD run for {day} on the simulated fills ...")
    compliance_run.callback(date_=dt.datetime.combine(day, dt.time()), trader_mode="sim", allow_short=True)
