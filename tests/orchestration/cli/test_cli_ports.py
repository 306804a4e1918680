"""``alphaline ui`` (``make ui``) refuses a taken port with one line before it starts anything."""

import socket
import subprocess
import sys
from pathlib import Path


def test_ui_when_the_port_is_taken_exits_2_with_one_line_naming_the_port(tmp_path: Path):
    with socket.socket() as other:  # e.g. `make serve` already on this port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = {"ALPHALINE_HOME": str(tmp_path / "home"), "PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
        proc = subprocess.run([sys.executable, "-c", "from orchestration.cli import run; run()", "ui", "--port", str(port)],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 2
        assert proc.stderr == (f"error: port {port} on 127.0.0.1 is in use (another make serve / make ui?); "
                               "choose another with PORT=...\n")
        assert proc.stdout == ""
        assert not (tmp_path / "home").exists()  # nothing was started or written
