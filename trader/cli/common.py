"""What every ``trader`` command shares: the ``--config``/``--mode`` options, the store each mode uses, tables.

:func:`store_url_for` picks a mode's store; :func:`_options` gives a read command its config, mode and store
URL; :func:`_read_store` opens a store without creating one; :class:`_Group` turns a
:class:`~trader.errors.TraderError` into one line and exit code 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from trader.cli_sim import UserError, alphaline_home
from trader.config import Mode, TraderConfig, load_config
from trader.errors import TraderError
from trader.servers import server_store_url
from trader.store import TraderStore, default_store_url, sqlite_file

_MODES = click.Choice([m.value for m in Mode])


class _Group(click.Group):
    """Turns a :class:`TraderError` (bad config, unreachable store, ...) into a one-line error, exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TraderError as exc:
            raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def store_url_for(mode: Mode, config: TraderConfig | None) -> str:
    """``store_url`` from the config, else the mode's database on ``ALPHALINE_POSTGRES_URL`` (the servers profile),
    else the mode's own SQLite file (live: DESIGN.md's ``trader.db``)."""
    if config is not None and config.store_url:
        return config.store_url
    if (server := server_store_url(mode.value)) is not None:
        return server
    if mode is Mode.LIVE:
        return default_store_url()
    return f"sqlite:///{alphaline_home() / 'trader' / f'{mode.value}.db'}"


def _config(path: Path | None, *, required: bool) -> TraderConfig | None:
    if path is None and Path("trader.yaml").is_file():
        path = Path("trader.yaml")
    if path is None:
        if required:
            raise UserError("no trader.yaml here; pass --config PATH (see trader/trader.example.yaml)")
        return None
    return load_config(path)


def _options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` and ``--mode`` for the commands that read a store; passes ``cfg``, ``mode`` and ``store_url``."""

    @click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="trader.yaml (default: ./trader.yaml when present).")
    @click.option("--mode", type=_MODES, default=None, help="Whose store to read (default: the config's mode, else sim).")
    @functools.wraps(func)
    def wrapper(config_path: Path | None, mode: str | None, **kwargs: Any) -> Any:
        cfg = _config(config_path, required=False)
        chosen = Mode(mode) if mode else (cfg.mode if cfg else Mode.SIM)
        return func(cfg=cfg, mode=chosen, store_url=store_url_for(chosen, cfg), **kwargs)

    return wrapper


def _table(rows: Iterable[Iterable[Any]], headers: list[str]) -> None:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _read_store(url: str, mode: Mode) -> TraderStore:
    """The store of a read command, which creates nothing: a missing SQLite file is an error, not a new empty store."""
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise click.ClickException(f"no {mode.value} store at {path}: nothing has run in this mode yet (is ALPHALINE_HOME set?)")
    return TraderStore(url)

