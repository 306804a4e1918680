"""Start the prediction service over this project's ``ALPHALINE_HOME`` (``make serve``).

``bentoml serve serving.service:Ensemble`` with the environment the service needs:
``ALPHALINE_HOME`` (features), ``BENTOML_HOME=$ALPHALINE_HOME/bentoml`` (the model
store the registry writes) and telemetry off. It checks first that a production
ensemble exists and that the port is free, so a fresh checkout or a second server gets
one line of advice instead of a traceback.

The default port is 3001: the Dagster UI (``make ui``) has Dagster's 3000, and both
often run side by side. ``make serve PORT=3005`` picks another.

Examples::

    python -m serving.serve                       # http://127.0.0.1:3001
    python -m serving.serve --port 3005 --host 0.0.0.0
    python -m serving.serve --workers 4                 # 4 worker processes behind one port
    python -m serving.serve --bento alphaline-serving:latest   # a built Bento (bentoml build) instead of the source
    ALPHALINE_HOME=/data/alphaline python -m serving.serve
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVICE = "serving.service:Ensemble"
SERVICE_NAME = "alphaline_ensemble_service"  # @bentoml.service(name=...) in serving/service.py
DEFAULT_PORT = 3001  # next to the Dagster UI's 3000 (make ui)
#: Tools in the stack that report usage over the network unless told not to.
TELEMETRY_OFF = {"BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "1", "FEAST_USAGE": "False"}


def default_home() -> Path:
    return Path(os.environ.get("ALPHALINE_HOME", ".alphaline")).expanduser().resolve()


def serve_env(home: Path, base: Mapping[str, str] | None = None, *, workers: int = 1) -> dict[str, str]:
    """``base`` (default: this process's environment) with the service's variables set for ``home``.

    ``workers`` > 1 goes through BentoML's own setting (``services.<name>.workers`` in ``BENTOML_CONFIG_OPTIONS``:
    ``bentoml serve`` of a new-style service has no ``--workers`` flag) and tells the service (``/reload`` is
    then refused).
    """
    env = dict(os.environ if base is None else base)
    env["ALPHALINE_HOME"] = str(home)
    env["BENTOML_HOME"] = str(home / "bentoml")
    if workers > 1:
        option = f"services.{SERVICE_NAME}.workers={workers}"
        env["BENTOML_CONFIG_OPTIONS"] = " ".join(filter(None, [env.get("BENTOML_CONFIG_OPTIONS", ""), option]))
        env["ALPHALINE_SERVING_WORKERS"] = str(workers)
    for key, value in TELEMETRY_OFF.items():
        env.setdefault(key, value)
    return env


def serve_command(*, port: int = DEFAULT_PORT, host: str = "127.0.0.1", bento: str | None = None) -> list[str]:
    """The ``bentoml serve`` command line (this interpreter's ``bentoml``): the repo's source, or a built ``bento`` tag."""
    target = [bento] if bento else [SERVICE, "--working-dir", str(REPO)]
    return [sys.executable, "-m", "bentoml", "serve", *target, "--host", host, "--port", str(port)]


def port_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on ``host:port`` (one line), or ``None`` when it can.

    It binds the port the way uvicorn and Dagster do, then lets it go.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as the servers set it: connections of a stopped server in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is in use (another make serve / make ui?); choose another with PORT=..."
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def production_tag(home: Path) -> str:
    """The production ensemble's tag under ``home``.

    Raises:
        NoProductionModel: there is none yet.
    """
    from models.registry import Registry
    from serving.errors import NoProductionModel

    tag = Registry(home).production()
    if tag is None:
        raise NoProductionModel(f"no production ensemble in {home / 'bentoml' / 'models'}: run `make demo` "
                                "(or `alphaline models promote`) first")
    return tag


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--home", type=Path, default=None, help="ALPHALINE_HOME (default: $ALPHALINE_HOME or .alphaline)")
    parser.add_argument("--workers", type=int, default=1, choices=range(1, 65), metavar="N",
                        help="worker processes behind the port (default 1; with more, /reload is refused: restart)")
    parser.add_argument("--bento", default=None, metavar="TAG", help="serve a built Bento (bentoml build) instead of the source")
    args = parser.parse_args(argv)
    home = (args.home or default_home()).expanduser().resolve()
    from serving.errors import NoProductionModel

    problem = port_problem(args.host, args.port)
    if problem:  # bentoml would find out only after seconds of imports, and say it with a traceback
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        tag = production_tag(home)
    except NoProductionModel as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    command = serve_command(port=args.port, host=args.host, bento=args.bento)
    what = f"{tag} ({args.workers} workers)" if args.workers > 1 else tag
    print(f"Serving {what} on http://{args.host}:{args.port} (ALPHALINE_HOME={home}); Ctrl-C stops it.", flush=True)
    os.execvpe(command[0], command, serve_env(home, workers=args.workers))
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
