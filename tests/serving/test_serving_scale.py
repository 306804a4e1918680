"""Serving scaled out: a Bento built offline (``bentoml build``) served by ``bentoml serve <tag>`` with two workers
on the servers profile (registry and offline tables on PostgreSQL, online features from Redis). Both workers answer,
and every answer is the in-process ensemble's score of the latest bar."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import polars as pl
import pytest

from models.data import matrix
from serving.demo import free_port, running
from serving.serve import REPO, serve_env
from tests.serving.serving_world import LAGGING, build_world

pytestmark = [pytest.mark.slow, pytest.mark.servers, pytest.mark.timeout(420)]

#: Any download attempt fails fast: proxies on a closed port of 127.0.0.1, pip without an index.
OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost",
           "PIP_NO_INDEX": "1"}
_PREDICT_LINE = re.compile(r"\[entry_service:alphaline_ensemble_service:(\d+)\] predict symbols=")


def test_built_bento_serves_predictions_from_redis_consistently_on_two_workers(tmp_path, monkeypatch, postgres_url, redis_server):
    redis_server.flush()
    feast = {"ALPHALINE_FEAST_CONFIG": "prod", "ALPHALINE_FEAST_REGISTRY_URL": postgres_url,
             "ALPHALINE_FEAST_REDIS": redis_server.feast_connection_string}
    for key, value in feast.items():
        monkeypatch.setenv(key, value)
    world = build_world(tmp_path / "home", variant="prod")
    assert not (world.home / "feast" / "online.db").exists()  # the online values live in Redis

    env = {**serve_env(world.home), **OFFLINE}
    built = subprocess.run([sys.executable, "-m", "bentoml", "build", str(REPO), "--output", "tag"], env=env,
                           capture_output=True, text=True, timeout=300, cwd=REPO)
    assert built.returncode == 0, built.stderr[-2000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("alphaline-serving:")

    latest = world.features.filter(pl.col("event_timestamp") == world.last_ts).sort("symbol")
    expected = dict(zip(latest["symbol"], world.registry.load_ensemble(world.champion).predict(matrix(latest)), strict=True))
    symbols = sorted(expected)
    assert LAGGING not in symbols
    log = tmp_path / "serve.log"
    with running(world.home, free_port(), workers=2, bento=tag, log=log, env={**os.environ, **OFFLINE}) as server:
        answers, workers = [], set()
        with ThreadPoolExecutor(8) as pool:
            for _ in range(25):  # until both workers have answered (one may still be starting when /readyz says yes)
                answers += pool.map(lambda _: httpx.post(f"{server.url}/predict", json={"symbols": symbols}, timeout=60),
                                    range(16))
                workers = set(_PREDICT_LINE.findall(log.read_text()))
                if len(workers) == 2:
                    break
        reload = httpx.post(f"{server.url}/reload", timeout=30)
    assert workers == {"1", "2"}, log.read_text()[-3000:]
    assert {a.status_code for a in answers} == {200}
    bodies = [a.json() for a in answers]
    assert {b["model_version"] for b in bodies} == {world.champion}
    for body in bodies:
        assert {p["symbol"]: p["score"] for p in body["predictions"]} == pytest.approx(expected, rel=1e-12)
    assert reload.status_code == 409 and "2 workers would disagree" in reload.text  # a reload would reach one worker
    assert "Traceback" not in log.read_text()
