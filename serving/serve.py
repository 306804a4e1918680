"""Start the prediction service over this project's ``ALPHALINE_HOME`` (``make serve``).

``bentoml serve serving.service:Ensemble`` with the environment the service needs:
``ALPHALINE_HOME`` (features), ``BENTOML_HOME=$ALPHALINE_HOME/bentoml`` (the model
store the registry writes) and telemetry off. It checks first that a production
ensemble exists, so a fresh checkout gets one line of advice instead of a traceback.

Examples::

    python -m serving.serve                       # http://127.0.0.1:3000
    python -m serving.serve --port 3001 --host 0.0.0.0
    ALPHALINE_HOME=/data/alphaline python -m serving.serve
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVICE = "serving.service:Ensemble"
#: Tools in the stack that report usage over the network unless told not to.
TELEMETRY_OFF = {"BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "1", "FEAST_USAGE": "False"}


def default_home() -> Path:
    return Path(os.environ.get("ALPHALINE_HOME", ".alphaline")).expanduser().resolve()


def serve_env(home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the service's variables set for ``home``."""
    env = dict(os.environ if base is None else base)
    env["ALPHALINE_HOME"] = str(home)
    env["BENTOML_HOME"] = str(home / "bentoml")
    for key, value in TELEMETRY_OFF.items():
        env.setdefault(key, value)
    return env


def serve_command(*, port: int = 3000, host: str = "127.0.0.1") -> list[str]:
    """The ``bentoml serve`` command line (this interpreter's ``bentoml``, the repo as working dir)."""
    return [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port),
            "--working-dir", str(REPO)]


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
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--home", type=Path, default=None, help="ALPHALINE_HOME (default: $ALPHALINE_HOME or .alphaline)")
    args = parser.parse_args(argv)
    home = (args.home or default_home()).expanduser().resolve()
    from serving.errors import NoProductionModel

    try:
        tag = production_tag(home)
    except NoProductionModel as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    command = serve_command(port=args.port, host=args.host)
    print(f"Serving {tag} on http://{args.host}:{args.port} (ALPHALINE_HOME={home}); Ctrl-C stops it.", flush=True)
    os.execvpe(command[0], command, serve_env(home))
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
