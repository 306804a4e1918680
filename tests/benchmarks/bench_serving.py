"""Benchmark ``POST /predict`` for the whole universe against a live ``bentoml serve``, as ratios of the in-process call.

Run by hand, never under pytest::

    python -m tests.benchmarks.bench_serving [--symbols 48] [--requests 400] [--home PATH]

Input (not timed): a fresh home with ``--symbols`` synthetic symbols, Feast offline +
online and a ridge ensemble in production (``tests/serving/serving_world``), or an
existing ``--home`` (e.g. after ``make demo``) with its own production model.

Measured in the same run, same machine:

* **floor (in-process)** — :meth:`serving.predictor.Predictor.predict` for the universe in
  this process: the service's own code path (online snapshot, checks, scoring,
  confidence, response model) without HTTP or BentoML.
* **model only** — ``ensemble.predict`` on the universe's feature matrix.
* **live** — ``bentoml serve`` (1 worker, as configured) on 127.0.0.1, queried by
  ``c`` client threads (stdlib ``http.client``, one keep-alive connection each) for
  c = 1, 8, 32; per-request latency from send to parsed answer; throughput = requests /
  wall time; and the server's own view, BentoML's access-log latency.
* **as_of** — one live ``/predict`` with ``as_of`` (the replay path: offline files,
  point in time) at c = 1, for reference.
* **BentoML floor** — the cheapest BentoML endpoint there is: an ``async`` API that parses
  the same body into a pydantic model and answers a one-field model, served and queried
  the same way at c = 1 and c = 8, in blocks alternating with the live service's (4 each),
  so that both meet the same load on the shared cores. No service can answer over BentoML
  faster than this.

Ratios: live p50 / floor p50 and live p99 / floor p99 at each concurrency, and live
throughput / floor throughput (1 / floor mean). The client threads share the 2 cores with
the server, so the live figures include the client's own cost. The in-process call is a
cached lookup (the universe is scored once per online snapshot), so against it the fixed
per-request cost of HTTP + BentoML dominates; the verdict rows also give live / BentoML floor.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from models.registry import Registry
from serving.config import ServingSettings
from serving.demo import Server, free_port, running, stop, universe, wait_ready
from serving.predictor import Predictor
from serving.schemas import PredictRequest
from tests.benchmarks.summary import Verdict, report

LEVELS = (1, 8, 32)
PAIRED = (1, 8)  # levels also measured on the no-op BentoML service, in alternating blocks
ACCESS = re.compile(r"path=/predict,[^)]*\) \(status=200[^)]*\) ([0-9.]+)ms")


def _stats(ms: Sequence[float], wall: float) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean()),
            "rps": len(a) / wall}


def _timed(call: Callable[[], object], n: int) -> dict[str, float]:
    ms = []
    began = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        call()
        ms.append((time.perf_counter() - t) * 1000)
    return _stats(ms, time.perf_counter() - began)


def floors(home: Path, symbols: list[str], n: int) -> tuple[dict[str, float], dict[str, float]]:
    predictor = Predictor.from_settings(ServingSettings(home=home), Registry(home))
    request = PredictRequest(symbols=symbols)
    for _ in range(20):
        predictor.predict(request)
    in_process = _timed(lambda: predictor.predict(request), n)
    snap = predictor.source.online()
    from models.data import matrix

    x = matrix(snap.frame, predictor.model.features)
    model_only = _timed(lambda: predictor.model.ensemble.predict(x), n)
    return in_process, model_only


@dataclass
class Burst:
    """Latencies of requests sent to one server: client-side ms, wall seconds, and the server's (access log) ms."""

    ms: list[float] = field(default_factory=list)
    wall: float = 0.0
    server_ms: list[float] = field(default_factory=list)

    def add(self, other: Burst) -> Burst:
        return Burst(self.ms + other.ms, self.wall + other.wall, self.server_ms + other.server_ms)

    def client(self) -> dict[str, float]:
        return _stats(self.ms, self.wall)

    def server(self) -> dict[str, float]:
        return _stats(self.server_ms, 1.0) if self.server_ms else {"p50": float("nan"), "p99": float("nan")}


def live(url: str, body: dict, concurrency: int, n: int, log: Path | None = None) -> Burst:
    """``n`` POST /predict from ``concurrency`` threads, one keep-alive connection each (stdlib client: the
    client's own cost stays small next to the server's on the shared cores).

    Returns the client's view and the server's (BentoML's access log in ``log``, timed requests only).
    """
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    local = threading.local()
    failures: list[int] = []

    def one(_: int) -> float:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        t = time.perf_counter()
        conn.request("POST", "/predict", payload, {"Content-Type": "application/json"})
        response = conn.getresponse()
        json.loads(response.read())
        if response.status != 200:
            failures.append(response.status)
        return (time.perf_counter() - t) * 1000

    with ThreadPoolExecutor(concurrency) as pool:
        # c = 1 runs in this thread: a hand-off to a pool thread per request would be timed too.
        run = (lambda k: [one(i) for i in range(k)]) if concurrency == 1 else (lambda k: list(pool.map(one, range(k))))
        run(min(n, 4 * concurrency))  # warm-up: connections, snapshot
        time.sleep(0.2)  # let the warm-up's access-log lines land before the mark
        mark = log.stat().st_size if log else 0
        began = time.perf_counter()
        ms = run(n)
        wall = time.perf_counter() - began
    if failures:
        raise SystemExit(f"{len(failures)} of {n} requests failed (HTTP {sorted(set(failures))})")
    time.sleep(0.2)
    return Burst(ms, wall, server_side(log, mark) if log else [])


def paired(ours: Server, floor: Server, body: dict, concurrency: int, n: int, rounds: int = 4) -> tuple[Burst, Burst]:
    """``n`` requests to each server in ``rounds`` alternating blocks, so that both see the same load on the shared cores."""
    a, b = Burst(), Burst()
    for _ in range(rounds):
        a = a.add(live(ours.url, body, concurrency, max(1, n // rounds), ours.log))
        b = b.add(live(floor.url, body, concurrency, max(1, n // rounds)))
    return a, b


def server_side(log: Path, start: int) -> list[float]:
    """BentoML's access-log latencies (ms) of the /predict lines written after byte ``start``."""
    text = log.read_bytes()[start:].decode(errors="replace")
    return [float(m) for m in ACCESS.findall(text)]


TRIVIAL = """
import bentoml
from pydantic import BaseModel


class Request(BaseModel):
    symbols: list[str]


class Answer(BaseModel):
    n: int


@bentoml.service(name="trivial", workers=1)
class Trivial:
    @bentoml.api(route="/predict")
    async def predict(self, request: Request, /) -> Answer:
        return Answer(n=len(request.symbols))
"""


@contextmanager
def trivial_server() -> Iterator[Server]:
    """``bentoml serve`` of a service whose ``/predict`` does nothing: BentoML's own per-request cost here."""
    folder = Path(tempfile.mkdtemp(prefix="bench_trivial_"))
    (folder / "trivial.py").write_text(TRIVIAL)
    port = free_port()
    log = folder / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "trivial:Trivial", "--port", str(port),
                                    "--working-dir", str(folder)], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "BENTOML_DO_NOT_TRACK": "true"}, start_new_session=True)
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        wait_ready(server, 120)
        yield server
    finally:
        stop(server)


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "n/a"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=48)
    parser.add_argument("--requests", type=int, default=400, help="Requests per concurrency level (x2 at c=32).")
    parser.add_argument("--home", type=Path, help="An existing ALPHALINE_HOME with a production model.")
    args = parser.parse_args(argv)
    home = args.home
    if home is None:
        from tests.serving.serving_world import build_world

        home = Path(tempfile.mkdtemp(prefix="bench_serving_"))
        print(f"building a {args.symbols}-symbol home in {home} ...", flush=True)
        build_world(home, n_symbols=args.symbols, lag_bars=0)
    symbols = universe(home)
    in_process, model_only = floors(home, symbols, args.requests)
    print(f"\nuniverse: {len(symbols)} symbols; model {Registry(home).production()}")
    print(f"floor  in-process Predictor.predict  p50 {in_process['p50']:7.2f} ms  p99 {in_process['p99']:7.2f} ms  "
          f"{in_process['rps']:8.0f} req/s")
    print(f"       ensemble.predict only         p50 {model_only['p50']:7.2f} ms  p99 {model_only['p99']:7.2f} ms")
    body = {"symbols": symbols}
    rows, trivial = [], {}
    with running(home, free_port()) as server, trivial_server() as noop:
        for c in LEVELS:
            if c in PAIRED:
                ours, floor = paired(server, noop, body, c, args.requests)
                trivial[c] = floor.client()
            else:
                ours = live(server.url, body, c, args.requests * 2, server.log)
            rows.append((c, ours.client(), ours.server()))
        ts = httpx.post(f"{server.url}/predict", json=body, timeout=30).json()["predictions"][0]["feature_ts"]
        as_of = live(server.url, {"symbols": symbols, "as_of": ts}, 1, max(20, args.requests // 10)).client()
    print(f"\nlive bentoml serve (1 worker) on 127.0.0.1; stopped cleanly: exit {server.returncode}")
    print(f"{'c':>3} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'p50/floor':>10} {'p99/floor':>10} {'rps/floor':>10}"
          f"   server-side p50/p99 ms (access log)")
    for c, s, srv in rows:
        print(f"{c:>3} {s['p50']:8.2f} {s['p99']:8.2f} {s['rps']:8.0f} {s['p50'] / in_process['p50']:10.2f} "
              f"{s['p99'] / in_process['p99']:10.2f} {s['rps'] / in_process['rps']:10.2f}   {srv['p50']:6.2f} / {srv['p99']:6.2f}")
    print(f"as_of (replay path), c=1: p50 {as_of['p50']:.2f} ms  p99 {as_of['p99']:.2f} ms")
    by = {c: s for c, s, _ in rows}
    for c, t in trivial.items():
        print(f"BentoML floor (an async service that returns len(symbols), measured in blocks alternating with the above), "
              f"c={c}: p50 {t['p50']:.2f} ms  p99 {t['p99']:.2f} ms  {t['rps']:.0f} req/s;  "
              f"live/floor p50 {by[c]['p50'] / t['p50']:.2f}x  p99 {by[c]['p99'] / t['p99']:.2f}x")
    print(f"\ngoal p99 < 50 ms at c=8: {'met' if by[8]['p99'] < 50 else 'NOT met'}; "
          f"goal overhead < 2x the in-process call (p50, c=1): {'met' if by[1]['p50'] < 2 * in_process['p50'] else 'NOT met'}"
          f" (BentoML alone takes {trivial[1]['p50'] / in_process['p50']:.1f}x it); "
          f"< 2x the BentoML floor: {'met' if by[1]['p50'] < 2 * trivial[1]['p50'] else 'NOT met'}")
    print(f"load average while measuring (1 min): {_load()}")
    n = len(symbols)
    report([
        Verdict("serving", f"/predict {n} symbols, c=1", f"p50 {by[1]['p50']:.2f} ms", "in-process Predictor.predict p50",
                by[1]["p50"] / in_process["p50"], "< 2× in-process", by[1]["p50"] < 2 * in_process["p50"]),
        Verdict("serving", f"/predict {n} symbols, c=1", f"p50 {by[1]['p50']:.2f} ms", "BentoML floor p50 (no-op async API)",
                by[1]["p50"] / trivial[1]["p50"], "< 2× BentoML floor", by[1]["p50"] < 2 * trivial[1]["p50"]),
        Verdict("serving", f"/predict {n} symbols, c=8", f"p99 {by[8]['p99']:.2f} ms", "BentoML floor p99 (no-op async API)",
                by[8]["p99"] / trivial[8]["p99"], "p99 < 50 ms", by[8]["p99"] < 50),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
