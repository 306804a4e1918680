"""``python -m orchestration.cli``: the ``alphaline`` console script without the installed entry point."""

from orchestration.cli import run

run()
