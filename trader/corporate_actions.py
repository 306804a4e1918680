"""Splits and cash dividends in the trader's book: positions follow them, each is applied once.

Timing and accounting rules:

* **Known at the ex-date.** An action is applied at the first cycle whose New York date is on or
  after its ex-date (:meth:`CorporateActionBook.apply_due`), before that cycle syncs the venue's
  fills: a fill on the ex-date is already in post-split shares and prices.
* **Split** (ratio ``r`` new shares per old share): ``qty × r``, ``avg_cost ÷ r``; realised P&L and
  fees are unchanged, so the market value at the post-split price is unchanged. No fill is
  invented: the shares the split adds are recorded in the append-only ``corporate_actions``
  table (``qty_before``, ``qty_after``), and the run loop's invariant reads *fills plus split
  shares sum to positions* (:func:`split_shares`).
* **Cash dividend** (``amount`` per share): a long position is credited ``qty × amount``, a short
  one debited (the borrower pays the lender). The run loop books it at the ex-date (an accrual);
  a real venue pays on the payable date, and the loop takes its opening cash from the venue, so a
  restart between the two dates shows the venue's cash until the payment lands (a simulated venue
  pays at the ex-date: its cash always equals the loop's).
* **Venues.** The simulator applies each action at the first event of its ex-date
  (:class:`~trader.brokers.sim.SimBroker` ``actions``), as a real venue does overnight; ``trader run``
  against a real venue applies the due actions to the store before reconciling with it, so a
  split position is not a mismatch.
* **Last prices and the price collar.** The trader trades raw prices at the venue, and the collar
  compares an order's price with the last raw price. The last price known before the ex-date is
  a pre-split price; the runner restates it with :meth:`CorporateAction.restate_price`
  (÷ ratio; − dividend), as the exchange restates the previous close, so the first orders of
  the ex-date are neither sized nor collared against a price the shares no longer trade at.
  Prices that arrive on the ex-date are raw post-split prices and need nothing.
* **Idempotent.** Each action has an id (``AAA:2024-03-04:split``); applying it is recorded under
  that id with its audit record (``corporate_action``) in one transaction, and an id already
  recorded is skipped: re-running a cycle, a restart or ``trader corporate-actions`` never
  applies it twice.
* On the same ex-date a dividend is applied before a split (its amount is per pre-split share).

Where actions come from: ``marts.corporate_actions`` in the warehouse (:class:`WarehouseActions`,
read-only, built by dbt from ``raw.corporate_actions``), or a list (:class:`InMemoryActions`).

Example:
    >>> import datetime as dt
    >>> from decimal import Decimal as D
    >>> from trader.domain import Position
    >>> split = CorporateAction(symbol="AAA", ex_date=dt.date(2024, 3, 4), kind="split", ratio=D(2))
    >>> after = split.apply_to(Position(symbol="AAA", qty=D(100), avg_cost=D("50.00")))
    >>> after.qty, after.avg_cost, split.action_id
    (Decimal('200'), Decimal('25.00'), 'AAA:2024-03-04:split')
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from trader.domain import ZERO, Position, Symbol, to_decimal, to_symbol
from trader.errors import BrokerError, DomainError
from trader.market_hours import active_profile

if TYPE_CHECKING:
    from trader.brokers.bars import BarFeed
    from trader.store import TraderStore

KINDS = ("split", "cash_dividend")


def session_date(ts: dt.datetime) -> dt.date:
    """The trading day of ``ts`` (New York date; crypto: the UTC day): the session an ex-date is compared with."""
    return active_profile().trading_day(ts)


@dataclass(frozen=True)
class CorporateAction:
    """A split (``ratio`` new shares per old share) or a cash dividend (``amount`` per share) at ``ex_date``."""

    symbol: Symbol
    ex_date: dt.date
    kind: str
    ratio: Decimal | None = None
    amount: Decimal | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", to_symbol(self.symbol))
        where = f"corporate action {self.symbol} {self.ex_date}"
        if self.kind not in KINDS:
            raise DomainError(f"{where}: kind: {self.kind!r} is not one of {', '.join(KINDS)}")
        field = "ratio" if self.kind == "split" else "amount"
        value = getattr(self, field)
        if value is None:
            raise DomainError(f"{where}: {field}: missing for a {self.kind}")
        value = to_decimal(value, f"{where}: {field}")
        if value <= 0 or (field == "ratio" and value == 1):
            raise DomainError(f"{where}: {field}: {value} must be > 0" + (" and not 1" if field == "ratio" else ""))
        # The warehouse's DECIMAL(24, 12) reads back as 2.000000000000: keep the plain value (2, 0.24).
        object.__setattr__(self, field, value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize())

    @property
    def action_id(self) -> str:
        return f"{self.symbol}:{self.ex_date.isoformat()}:{self.kind}"

    def apply_to(self, position: Position) -> Position:
        """The position after the action: a split scales quantity and average cost; a dividend leaves it as is."""
        if self.kind != "split" or position.qty == 0:
            return position
        assert self.ratio is not None
        return replace(position, qty=position.qty * self.ratio, avg_cost=position.avg_cost / self.ratio)

    def cash(self, position: Position) -> Decimal:
        """Cash the action moves: ``qty × amount`` for a dividend (negative when short), 0 for a split."""
        return position.qty * self.amount if self.kind == "cash_dividend" and self.amount is not None else ZERO

    def restate_price(self, price: Decimal) -> Decimal:
        """A price from before the ex-date in the terms of the ex-date (÷ ratio; − dividend, floored at a cent)."""
        if self.kind == "split":
            assert self.ratio is not None
            return price / self.ratio
        assert self.amount is not None
        return max(price - self.amount, Decimal("0.01"))


@dataclass(frozen=True)
class AppliedAction:
    """What applying one action did to the book (a row of the store's ``corporate_actions`` table)."""

    action: CorporateAction
    qty_before: Decimal
    qty_after: Decimal
    avg_cost_before: Decimal
    avg_cost_after: Decimal
    cash: Decimal
    applied_at: dt.datetime

    @property
    def symbol(self) -> Symbol:
        return self.action.symbol

    @property
    def share_delta(self) -> Decimal:
        """Shares the action added (a split) or removed (a reverse split) without a fill."""
        return self.qty_after - self.qty_before

    def to_record(self) -> dict[str, Any]:
        a = self.action
        return {"action_id": a.action_id, "symbol": a.symbol, "kind": a.kind, "ex_date": a.ex_date.isoformat(),
                "ratio": a.ratio, "amount": a.amount, "qty_before": self.qty_before, "qty_after": self.qty_after,
                "avg_cost_before": self.avg_cost_before, "avg_cost_after": self.avg_cost_after, "cash": self.cash,
                "applied_at": self.applied_at}

    @classmethod
    def from_record(cls, row: dict[str, Any]) -> AppliedAction:
        action = CorporateAction(symbol=row["symbol"], ex_date=dt.date.fromisoformat(row["ex_date"]), kind=row["kind"],
                                 ratio=row["ratio"], amount=row["amount"])
        return cls(action, row["qty_before"], row["qty_after"], row["avg_cost_before"], row["avg_cost_after"], row["cash"],
                   row["applied_at"])


def apply_action(store: TraderStore, action: CorporateAction, *, at: dt.datetime, run_id: str = "") -> AppliedAction | None:
    """Apply ``action`` to the stored position once; ``None`` if it was applied before (nothing changes then).

    The position, the ``corporate_actions`` row and the ``corporate_action`` audit record commit together.
    """
    with store.transaction() as tx:
        if tx.corporate_action_applied(action.action_id):
            return None
        before = tx.position(action.symbol)
        after = action.apply_to(before)
        done = AppliedAction(action, before.qty, after.qty, before.avg_cost, after.avg_cost, action.cash(before), at)
        tx.record_corporate_action(done.to_record(), position=after if after is not before else None, at=at)
        tx.append_audit("corporate_action", done.to_record() | {"run_id": run_id}, ts=at)
    return done


def applied_actions(store: TraderStore) -> list[AppliedAction]:
    """Every action applied to this store, in the order applied."""
    return [AppliedAction.from_record(row) for row in store.corporate_action_rows()]


def split_shares(store: TraderStore) -> dict[Symbol, Decimal]:
    """Shares that splits added per symbol: with the fills, they sum to the positions."""
    out: dict[Symbol, Decimal] = {}
    for done in applied_actions(store):
        if done.share_delta:
            out[done.symbol] = out.get(done.symbol, ZERO) + done.share_delta
    return out


def ordered(actions: Iterable[CorporateAction]) -> list[CorporateAction]:
    """By ex-date, then symbol; on one ex-date a dividend (per pre-split share) before a split."""
    return sorted(actions, key=lambda a: (a.ex_date, a.symbol, a.kind))


class ActionFeed(Protocol):
    """Where the trader learns about corporate actions."""

    def actions(self, *, through: dt.date) -> list[CorporateAction]:
        """Actions with ex-date on or before ``through``."""
        ...


@dataclass(frozen=True)
class InMemoryActions:
    """A fixed list of actions (tests, a file read by the caller)."""

    items: Sequence[CorporateAction] = ()

    def actions(self, *, through: dt.date) -> list[CorporateAction]:
        return ordered(a for a in self.items if a.ex_date <= through)


_QUERY = "SELECT symbol, ex_date, kind, ratio, amount FROM marts.corporate_actions WHERE ex_date <= ? ORDER BY ex_date, symbol, kind"


@dataclass(frozen=True)
class WarehouseActions:
    """``marts.corporate_actions`` from the warehouse (:mod:`trader.warehouse`), read-only; a warehouse without it has
    no actions. ``location``: the DuckDB file or PostgreSQL URL (default: this profile's warehouse)."""

    location: str | Path | None = None

    def actions(self, *, through: dt.date) -> list[CorporateAction]:
        # The drivers are imported on first use: the trader core stays lean.
        from trader.warehouse import WarehouseError, connect, fetch, is_postgres, table_exists, warehouse_location

        location = self.location or warehouse_location()
        if not is_postgres(location) and not Path(location).is_file():
            return []
        try:
            with connect(location) as conn:
                if not table_exists(conn, "marts", "corporate_actions"):
                    return []
                rows = fetch(conn, _QUERY, [through])
        except WarehouseError as exc:
            raise BrokerError(f"{exc} (reading marts.corporate_actions)") from None
        return [CorporateAction(symbol=s, ex_date=d, kind=k, ratio=r, amount=a) for s, d, k, r, a in rows]


def restated_closes(feed: BarFeed, symbols: Sequence[str], at: dt.datetime, actions: ActionFeed) -> dict[Symbol, Decimal]:
    """Each symbol's latest close by ``at`` (within a week), in the terms of ``at``'s session.

    A close from before an ex-date that has since passed (the warehouse has no bar of the ex-date yet)
    is restated by each such action: live ticks then never pair a post-split position with a
    pre-split price (the run loop's valuation, sizing and price collar all read these prices).

    Example:
        >>> from trader.brokers.bars import Bar, InMemoryBars
        >>> bar = Bar(symbol="AAA", ts=dt.datetime(2024, 3, 5, 20, 45, tzinfo=dt.UTC), open=Decimal(100),
        ...           high=Decimal(100), low=Decimal(100), close=Decimal(100), volume=Decimal(10))
        >>> split = InMemoryActions([CorporateAction(symbol="AAA", ex_date=dt.date(2024, 3, 6), kind="split", ratio=Decimal(2))])
        >>> restated_closes(InMemoryBars([bar]), ["AAA"], dt.datetime(2024, 3, 6, 14, 45, tzinfo=dt.UTC), split)
        {'AAA': Decimal('50')}
    """
    bars = feed.bars(symbols, after=at - dt.timedelta(days=7), until=at - feed.timeframe)
    last = {b.symbol: b for b in bars}  # sorted by time: the last one wins
    due = ordered(a for a in actions.actions(through=session_date(at)) if a.symbol in last)
    out = {}
    for symbol, bar in last.items():
        price = bar.close
        for action in due:
            if action.symbol == symbol and session_date(bar.ts) < action.ex_date:
                price = action.restate_price(price)
        out[symbol] = price
    return out


class CorporateActionBook:
    """The run loop's view: actions due by a cycle's session, applied once each.

    Args:
        feed: where actions come from (:class:`WarehouseActions` in a run).
    """

    def __init__(self, feed: ActionFeed):
        self.feed = feed

    def apply_due(self, store: TraderStore, *, now: dt.datetime, run_id: str = "") -> list[AppliedAction]:
        """Apply every action with ex-date on or before ``now``'s New York date that this store has not applied yet."""
        done = set(store.corporate_action_ids())
        due = [a for a in ordered(self.feed.actions(through=session_date(now))) if a.action_id not in done]
        return [applied for a in due if (applied := apply_action(store, a, at=now, run_id=run_id)) is not None]
