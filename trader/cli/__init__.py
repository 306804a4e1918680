"""``trader``: the trading CLI (DESIGN.md §3.5).

Typical session::

    trader run --mode sim --date 2026-11-20 --config trader.yaml   # replay a day from the warehouse
    trader status                                                   # state, last cycle, counts
    trader positions ; trader orders --working
    trader explain al-0123...                                       # one order's decision lineage
    trader kill --reason "feed looks wrong" --by alice              # HALTED + cancel working orders
    trader resume --by alice
    TRADER_API_TOKEN=... trader api --port 8080                     # the ops API

Each mode keeps its own state store under ``$ALPHALINE_HOME/trader/`` (``sim.db``,
``dry-run.db``, ``paper.db``; live uses ``trader.db``) unless ``trader.yaml`` sets
``store_url``, so simulated fills never mix with an account's. Read commands take
``--mode`` (default: the config's mode, else ``sim``) to pick the store. Every error a user
can cause is one line on stderr and a non-zero exit code; a ``run`` that ends with trading HALTED
exits 3. Read commands (``status``, ``positions``, ``orders``, ``explain``) never create a store, and

Where the commands live (this package re-exports the old ``trader.cli`` names, so ``from trader.cli import ...``
keeps working): :mod:`trader.cli.trading` (``run``; its venues in :mod:`trader.cli.venue` and :mod:`trader.cli_sim`),
:mod:`trader.cli.state` (``paths``, ``status``, ``positions``, ``orders``, ``corporate-actions``),
:mod:`trader.cli.control` (``kill``, ``resume``, ``reconcile``, ``api``), :mod:`trader.cli.reports` (``risk``,
``explain``, ``tca``, ``track``); the shared options and the store each mode uses are in :mod:`trader.cli.common`.
``python -m trader.cli`` is the same as the ``trader`` console script.
"""

from __future__ import annotations

import click

from trader.cli.common import _Group, store_url_for
from trader.cli.control import api, kill, reconcile, resume
from trader.cli.reports import explain, risk, tca, track
from trader.cli.state import corporate_actions, orders, paths, positions, status
from trader.cli.trading import run
from trader.cli.venue import DryRunBroker, venue_broker

__all__ = ["DryRunBroker", "api", "corporate_actions", "explain", "kill", "main", "orders", "paths", "positions", "reconcile",
           "resume", "risk", "run", "status", "store_url_for", "tca", "track", "venue_broker"]


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="alphaline")
def main() -> None:
    """Alphaline trader: risk engine, sizing and order routing."""


for _command in (paths, run, status, positions, corporate_actions, orders, kill, resume, reconcile, api, risk, explain,
                 tca, track):
    main.add_command(_command)
