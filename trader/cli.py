"""``trader``: the trading CLI (DESIGN.md §3.5).

The market-data layer ships first; the trading commands (run, status, kill, ...)
arrive with the trader service. Until then this entry point reports where the
trader's state will live, so installations can be checked end to end.
"""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="alphaline")
def main() -> None:
    """Alphaline trader: risk engine, sizing and order routing."""


@main.command()
def paths() -> None:
    """Show where the trader keeps its state (under ALPHALINE_HOME)."""
    home = Path(os.environ.get("ALPHALINE_HOME", ".alphaline")).resolve()
    click.echo(f"state store: {home / 'trader' / 'trader.db'}")
