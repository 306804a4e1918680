"""Start a real ``bentoml serve``, ask it about the whole universe, stop it: the serving part of ``make demo``.

:func:`serve_and_query` runs the service as ``python -m serving.serve`` would (same
command, same environment) on a port of this machine, waits until ``/readyz`` answers,
posts ``/predict`` for every symbol of the feature store and reads ``GET /model``, then
stops the server (SIGTERM, then SIGKILL after a grace period) and returns the answers.
The universe is asked with ``allow_stale: true`` so that one lagging symbol is shown
flagged rather than refusing the whole request.

Example (after ``alphaline demo``)::

    from pathlib import Path
    from serving.demo import free_port, serve_and_query
    answer = serve_and_query(Path(".alphaline"), free_port())
    answer["predict"]["body"]["predictions"][0]
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from serving.serve import serve_command, serve_env

READY_TIMEOUT = 120.0  # seconds: importing Feast, BentoML and the learners takes a while on a busy 2-core box
STOP_TIMEOUT = 20.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``bentoml serve``: its URL, process and log; ``returncode`` once stopped."""

    url: str
    process: subprocess.Popen
    log: Path
    returncode: int | None = None
    stopped_in: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextmanager
def running(home: Path, port: int, *, host: str = "127.0.0.1", log: Path | None = None,
            env: dict[str, str] | None = None, ready_timeout: float = READY_TIMEOUT, workers: int = 1,
            bento: str | None = None) -> Iterator[Server]:
    """``bentoml serve`` of ``home`` (the source, or a built ``bento``) with ``workers`` on ``host:port`` while the
    block runs; always stopped on exit.

    Raises:
        RuntimeError: the server exited or did not become ready in time (with its log's tail).
    """
    log = log or Path(tempfile.mkstemp(prefix="alphaline-serve-", suffix=".log")[1])
    with log.open("wb") as out:
        # A session of its own: Ctrl-C in the caller's terminal reaches the server only through stop().
        process = subprocess.Popen(serve_command(port=port, host=host, bento=bento), env=serve_env(home, env, workers=workers), stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(url=f"http://{host}:{port}", process=process, log=log)
    try:
        wait_ready(server, ready_timeout)
        yield server
    finally:
        stop(server)


def wait_ready(server: Server, timeout: float) -> None:
    """Poll ``/readyz`` until it answers 200.

    Raises:
        RuntimeError: the process exited first, or ``timeout`` seconds passed (with the log's tail).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {server.process.returncode} before it was ready:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"bentoml serve was not ready within {timeout:.0f}s:\n{server.log_tail()}")


def stop(server: Server, timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM the server (BentoML's arbiter stops its workers), SIGKILL its process group if it hangs."""
    began = time.monotonic()
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the group start_new_session gave it: only its own workers
            process.wait()
    server.returncode = process.returncode
    server.stopped_in = time.monotonic() - began
    return process.returncode


def universe(home: Path) -> list[str]:
    """Every symbol with offline features under ``home``."""
    import polars as pl

    from feature_repo.store import offline_dir, spine_path

    return sorted(pl.scan_parquet(spine_path(offline_dir(home))).select("symbol").unique().collect()["symbol"].to_list())


def serve_and_query(home: Path, port: int) -> dict[str, Any]:
    """Start the service on ``port``, query ``/predict`` (whole universe) and ``/model``, stop it; return the answers.

    Returns:
        ``{"url", "symbols", "predict": {"status", "body"}, "model": {"status", "body"}, "returncode", "stopped_in"}``.
    """
    home = Path(home).resolve()
    symbols = universe(home)
    with running(home, port) as server, httpx.Client(base_url=server.url, timeout=30.0) as client:
        predict = client.post("/predict", json={"symbols": symbols, "allow_stale": True})
        card = client.get("/model")
    return {"url": server.url, "symbols": symbols,
            "predict": {"status": predict.status_code, "body": predict.json()},
            "model": {"status": card.status_code, "body": card.json()},
            "returncode": server.returncode, "stopped_in": server.stopped_in}
