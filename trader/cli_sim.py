"""The sim side of ``trader run``: the day to replay, the session over it, and ``--fresh`` without losing records.

Everything the run needs from the warehouse is read (:func:`load_replay`) before the store is
touched, so a day without bars fails with one line and leaves the store as it was. ``--fresh``
never deletes: the old store is moved aside (:func:`replace_sim_store`), and a store holding days
sealed into the compliance WORM archive is refused unless ``--discard-sealed`` names them all.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import sqlalchemy as sa

from trader.brokers.base import Broker
from trader.config import SimVenueConfig, TraderConfig
from trader.errors import TraderError
from trader.market_hours import active_profile
from trader.runner import Tick, replay_ticks, session_start
from trader.store import TraderStore, sqlite_file

if TYPE_CHECKING:
    from trader.brokers.bars import Bar
    from trader.corporate_actions import CorporateAction

TIMEFRAME = "15m"


class UserError(click.ClickException):
    """A wrong combination of options: one line (no usage block), exit code 2 like click's own usage errors."""

    exit_code = 2


class RunHalted(click.ClickException):
    """The run ended with trading HALTED: exit code 3, so that a scheduler notices."""

    exit_code = 3


def alphaline_home() -> Path:
    return Path(os.environ.get("ALPHALINE_HOME", ".alphaline")).resolve()


def safe_url(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


@dataclass
class Session:
    """What one mode brings to the run loop: the venue, the ticks and how the clock advances."""

    broker: Broker
    ticks: Iterable[Tick]
    run_id: str
    strict: bool
    started_at: dt.datetime
    before_cycle: Callable[[Tick], object] | None = None


@dataclass(frozen=True)
class Replay:
    """The sim day to replay and its bars, read from the warehouse before the store is touched."""

    day: dt.date
    bars: list[Bar]
    timeframe: dt.timedelta
    actions: tuple[CorporateAction, ...] = ()  # splits and dividends through the day (marts.corporate_actions)


def load_replay(cfg: TraderConfig, day: dt.date | None) -> Replay:
    """The day's bars for the universe, or a one-line error (no warehouse, no bars that day)."""
    from trader.brokers.bars import WarehouseBars  # reads the warehouse read-only, one query at a time
    from trader.corporate_actions import WarehouseActions
    from trader.warehouse import describe

    feed = WarehouseBars(timeframe=TIMEFRAME)
    day = day or latest_day(feed.location)
    start = session_start(day)
    bars = feed.bars(cfg.universe.symbols, after=start, until=start + dt.timedelta(days=1))
    if not bars:
        raise TraderError(f"{describe(feed.location)}: marts.bars has no {TIMEFRAME} bars on {day} for the configured universe")
    actions = tuple(WarehouseActions(feed.location).actions(through=day))
    return Replay(day=day, bars=bars, timeframe=feed.timeframe, actions=actions)


_SQLITE_FILES = ("", "-wal", "-shm")  # a SQLite database and the companions it finds by name
#: What orchestration's EOD ``seal_day`` archives for each day, with meta ``{"audit_head": {"count", "hash"}}``:
#: the head of the trader's audit chain through that day.
_SEALED_HEAD = "audit_verification.json"


def replace_sim_store(url: str, *, discard: frozenset[dt.date]) -> dict[str, Any] | None:
    """``--fresh``: move the store's files aside (never delete them); refuse while it holds sealed days not named.

    Returns what the new store's ``sim_session`` record keeps about the replaced one (``None``: there was none).
    """
    from trader.servers import database_exists, move_database_aside

    path = sqlite_file(url)
    if path is None and sa.make_url(url).get_backend_name() != "postgresql":
        raise UserError(f"--fresh only replaces a SQLite or PostgreSQL sim store, not {safe_url(url)}")
    if not (path.exists() if path is not None else database_exists(url)):
        return None
    sealed = sealed_days(url)
    if set(sealed) - discard:
        days = ",".join(d.isoformat() for d in sealed)
        raise UserError(f"--fresh: {path or safe_url(url)} holds days sealed into the WORM archive ({days}); to replace it "
                        f"anyway, add --discard-sealed {days} (the archived copies stay)")
    aside = _move_aside(path) if path is not None else move_database_aside(url)  # a server's store: renamed, kept
    click.echo(f"--fresh: moved the old sim store aside to {aside}"
               + (f" (it holds sealed days {', '.join(d.isoformat() for d in sealed)})" if sealed else ""))
    return {"store": str(aside), "sealed_days": [d.isoformat() for d in sealed]}


def sealed_days(url: str) -> list[dt.date]:
    """The days sealed into the WORM archive *from this store*.

    The archive is shared by every store under ``ALPHALINE_HOME`` (the same calendar day may be sealed from the
    live store), so a day's date proves nothing. Each sealed day carries the head ``(count, hash)`` of the audit
    chain through it; a record's hash commits to every record before it, so if this store's record ``count`` has
    that hash, the sealed chain is this store's, and the day is its own when one of those records falls on it.
    """
    from trader.compliance import ComplianceError, WormArchive
    from trader.compliance.audit_check import record_day

    root = alphaline_home() / "archive"
    try:
        heads = {(e.date, int(e.meta["audit_head"]["count"]), str(e.meta["audit_head"]["hash"]))
                 for e in WormArchive(root).entries() if e.name == _SEALED_HEAD and "audit_head" in e.meta}
    except (ComplianceError, KeyError, TypeError, ValueError) as exc:  # fail closed: an unreadable archive may hold ours
        raise click.ClickException(f"--fresh: cannot read the WORM archive at {root} ({exc}); the store was left alone") from None
    if not heads:
        return []
    with TraderStore(url) as store:
        chain = list(store.audit_records())
    first: dict[dt.date, int] = {}
    for index, record in enumerate(chain):
        first.setdefault(record_day(record), index)
    return sorted({day for day, count, digest in heads
                   if 0 < count <= len(chain) and chain[count - 1].hash == digest and first.get(day, count) < count})


def _move_aside(path: Path) -> Path:
    """``sim.db`` → ``sim.db.replaced-<UTC time>``, its ``-wal``/``-shm`` renamed alike so SQLite still pairs them."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    aside, n = path.with_name(f"{path.name}.replaced-{stamp}"), 0
    while any(Path(f"{aside}{suffix}").exists() for suffix in _SQLITE_FILES):  # rename() would overwrite
        n += 1
        aside = path.with_name(f"{path.name}.replaced-{stamp}-{n}")
    for suffix in _SQLITE_FILES:
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(f"{aside}{suffix}")
    return aside


#: The venue a sim store opened before its session record kept one had: costless fills, 10 % of a bar's volume.
_COSTLESS = SimVenueConfig(slippage_bps=Decimal(0), fee_bps=Decimal(0)).record()


def _number(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def sim_session(store: TraderStore, replay: Replay, *, cash: Decimal | None, replaced: dict[str, Any] | None,
                lot_size: Decimal = Decimal(1), venue: SimVenueConfig | None = None) -> Session:
    """The simulated venue over ``replay``; ``lot_size`` is its fill unit (``sizing.fractional``: 10^-qty_decimals),
    ``venue`` its costs (``sim:`` in trader.yaml). A store keeps trading on the venue it opened with: a different
    ``--cash`` or ``sim:`` is refused (``--fresh`` starts a new store)."""
    from trader.brokers.bars import InMemoryBars
    from trader.brokers.sim import FeeModel, SimBroker, SimConfig

    day, bars, costs = replay.day, replay.bars, (venue or SimVenueConfig()).record()
    opened = store.latest_audit("sim_session")
    if opened is None:  # remembered, so that a resumed session rebuilds the same venue
        cash = cash or Decimal(100_000)
        store.append_audit("sim_session", {"cash": cash, "first_day": day, "venue": costs}
                           | ({"replaces": replaced} if replaced else {}), ts=session_start(day))
    elif cash is not None and cash != Decimal(opened.payload["cash"]):
        raise UserError(f"this sim store started with cash {opened.payload['cash']}; drop --cash or add --fresh")
    else:
        cash = Decimal(opened.payload["cash"])
    if opened is not None:
        kept = opened.payload.get("venue", _COSTLESS)
        changed = [f"{k} {kept.get(k)} (now {v})" for k, v in costs.items() if _number(kept.get(k)) != _number(v)]
        if changed:
            raise UserError(f"trader.yaml sim: this sim store started with {', '.join(changed)}; set it back or add --fresh")
        costs = kept
    sim = SimConfig(initial_cash=cash, lot_size=lot_size, slippage_bps=Decimal(costs["slippage_bps"]),
                    fees=FeeModel(bps=Decimal(costs["fee_bps"]), per_share=Decimal(costs["fee_per_share"])),
                    max_participation=None if costs["max_participation"] is None else Decimal(costs["max_participation"]))
    last = store.latest_audit("cycle")
    resume_at = dt.datetime.fromisoformat(last.payload["ts"]) if last else None
    broker = SimBroker(InMemoryBars(bars, timeframe=replay.timeframe), config=sim,
                       start=resume_at or bars[0].ts, actions=replay.actions)
    if resume_at is not None:  # the simulator keeps no state: rebuild it from the store
        broker.restore(orders=store.list_orders(), fills=store.list_fills())
    return Session(broker=broker, ticks=replay_ticks(bars, timeframe=TIMEFRAME), run_id=f"sim-{day}", strict=True,
                   started_at=resume_at or bars[0].ts, before_cycle=lambda tick: broker.advance_to(tick.ts))


def latest_day(location: str) -> dt.date:
    from trader.warehouse import WarehouseError, describe, query

    try:
        ((latest,),) = query(location, "SELECT max(ts) FROM marts.bars WHERE timeframe = ?", [TIMEFRAME])
    except WarehouseError as exc:
        raise TraderError(str(exc)) from None
    if latest is None:
        raise TraderError(f"{describe(location)}: marts.bars has no {TIMEFRAME} bars")
    return active_profile().trading_day(latest)
