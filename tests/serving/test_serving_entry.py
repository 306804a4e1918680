"""``python -m serving.serve`` (``make serve``): the command and environment it runs, its refusals (no model, port taken)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from serving.serve import REPO, main, serve_command, serve_env


def test_serve_runs_bentoml_serve_with_the_model_store_under_alphaline_home(tmp_path: Path):
    command = serve_command(port=3123, host="127.0.0.1")
    assert command[:5] == [sys.executable, "-m", "bentoml", "serve", "serving.service:Ensemble"]
    assert command[command.index("--port") + 1] == "3123"
    env = serve_env(tmp_path, {"PATH": "/bin", "BENTOML_HOME": "/elsewhere"})
    assert env["ALPHALINE_HOME"] == str(tmp_path) and env["BENTOML_HOME"] == str(tmp_path / "bentoml")
    assert env["BENTOML_DO_NOT_TRACK"] == "true" and env["PATH"] == "/bin"


def test_serve_without_a_production_model_exits_2_with_one_line_of_advice(tmp_path: Path, capsys):
    assert main(["--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("serve: no production ensemble in ") and "make demo" in err and "\n" not in err


def test_serve_when_the_port_is_taken_exits_2_with_one_line_and_leaves_the_other_server_alone(tmp_path: Path, capsys):
    with socket.socket() as other:  # e.g. `make ui` already on this port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert main(["--port", str(port), "--home", str(tmp_path)]) == 2
        out = capsys.readouterr()
        assert out.err == (f"error: port {port} on 127.0.0.1 is in use (another make serve / make ui?); "
                           "choose another with PORT=...\n")
        assert out.out == ""
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the other server still has its port


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_serve_and_make_ui_default_to_distinct_ports_and_take_port(tmp_path: Path):
    def command(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "PORT"}
        done = subprocess.run(["make", "-n", "-s", "-C", str(REPO), *args], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    assert command("serve").endswith("-m serving.serve --port 3001")
    assert command("ui").endswith("alphaline ui --port 3000")
    assert command("serve", "PORT=3005").endswith("--port 3005")
    assert command("ui", "PORT=3100").endswith("--port 3100")
