"""``python -m serving.serve`` (``make serve``): the command and environment it runs, and its refusal without a model."""

from __future__ import annotations

import sys
from pathlib import Path

from serving.serve import main, serve_command, serve_env


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
