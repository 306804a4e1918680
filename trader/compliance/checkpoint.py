"""Ledger checkpoints: the state of a :class:`~trader.compliance.lots.Ledger` at a day's close, as JSON.

Without a checkpoint, :func:`~trader.compliance.lots.close_day` replays every fill since
inception each day; with one, the next day resumes from yesterday's state and applies only
its own fills (``close_day(..., resume=restore_ledger(state))``).

A checkpoint holds exactly what later days can still need, so it stays bounded by one tax
year rather than growing with the whole history:

* every open lot, in FIFO order (carved wash-sale parts included), with its sequence number;
* the disposals of the checkpoint's tax year (Form 8949 is year to date) plus older loss
  disposals still waiting for replacement shares (their 30-day window is open: a purchase
  tomorrow can still disallow part of the loss and change them);
* the wash-sale adjustments booked in the tax year, the queue of pending losses (in sale
  order, by disposal id), cash, the lot sequence and the last fill applied.

Layout 2 (``FORMAT``, issue 20) splits the history in two. ``disposals`` and ``wash_sales``
hold what can still change (pending losses) and the day's own, restored as objects; ``sealed``
holds the rest of the tax year, final, as one line of CSV text each, with each disposal's
printed Form 8949 line and sort key and each Part's totals (:mod:`trader.compliance.sealed`).
A resume never parses sealed text into objects, and the next checkpoint writes it back as
read, with what became final merged in: a day's work grows with its fills and the open lots,
not with the year's disposals. Measured at year end (145k disposals, 129k wash sales, 65k
open lots; ``tests/benchmarks/bench_compliance.py``): the resumed ledger step went from
3.5 s to 1.6 s and the reports from 1.5 s to 0.55 s; the file grew from 54 to 60 MB (the
printed lines), and a full replay takes ~1 s longer (it prints every line once). Layout 1 (every disposal and wash sale an object) is still read, since sealed
checkpoints are archived for years; the first day resumed from one writes layout 2.

A chain of daily deltas on a periodic full snapshot was the other candidate. It would shrink
each day's file, but a resume would depend on every archived link since the snapshot (each
read and checked), and the reports still print the whole year's Form 8949 every day, so the
text must be at hand anyway; sealed text in one self-contained file gives the same per-day
work without the chain.

The JSON is deterministic (sorted keys, exact Decimal strings, no clock): the same day
closed by a full replay or by a resume gives the same bytes, so archiving it again on a
re-run is a no-op.

Example:
    >>> import datetime as dt
    >>> from decimal import Decimal
    >>> from trader.compliance.fills import ComplianceFill
    >>> from trader.compliance.lots import close_day
    >>> def fill(fid, side, day, qty, price):
    ...     return ComplianceFill(fill_id=fid, order_id=fid, client_order_id=fid, symbol="ACME", side=side, qty=qty,
    ...                           price=price, fee="0", ts=dt.datetime(2024, 5, day, 15, tzinfo=dt.UTC),
    ...                           venue="SIM", account="A1")
    >>> monday = close_day([fill("b1", "buy", 6, "10", "50")], day=dt.date(2024, 5, 6), closing_marks={"ACME": Decimal("51")})
    >>> state = dumps_day_close(monday)
    >>> tuesday = close_day([fill("s1", "sell", 7, "4", "55")], day=dt.date(2024, 5, 7), closing_marks={"ACME": Decimal("54")},
    ...                     opening_marks={"ACME": Decimal("51")}, resume=restore_ledger(loads(state)["ledger"]))
    >>> [(d.lot_id, d.qty, d.proceeds - d.basis) for d in tuesday.ledger.disposals], tuesday.roll_forward.ok
    ([('b1', Decimal('4'), Decimal('20'))], True)
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from decimal import Decimal
from itertools import chain
from operator import attrgetter
from typing import Any

import orjson

from trader.compliance.errors import ComplianceError
from trader.compliance.fills import ComplianceFill
from trader.compliance.lots import DayClose, Disposal, Ledger, RollForward, TaxLot
from trader.compliance.memo import FROM_ISO_DATE, ISO_DATE
from trader.compliance.reports import form_8949_key, form_8949_lines, form_8949_rows, part_totals
from trader.compliance.sealed import DISPOSAL_FIELDS, NOTHING_SEALED, PARTS, WASH_FIELDS, SealedYear, csv_line
from trader.compliance.wash_sales import WashSale

#: The layout written; every layout in ``READABLE`` still resumes (sealed checkpoints are archived for years).
FORMAT = 2
READABLE = (1, 2)
_LOT_FIELDS = ("lot_id", "account", "symbol", "direction", "order_id", "seq", "acquired", "holding_start", "qty", "cost",
               "wash_adjustment", "replacement_for")
_DATES = {"acquired", "holding_start", "opened", "sold", "replacement_acquired", "replacement_holding_start", "booked"}
_DECIMALS = {"qty", "cost", "wash_adjustment", "proceeds", "basis", "disallowed", "replaced_qty"}
_ROLL_FIELDS = ("opening", "realised_before_wash", "disallowed", "unrealised_open", "unrealised_close", "closing", "income")


class _Table:
    """Objects of one dataclass as ``{"columns": [...], "rows": [[...], ...]}``.

    Rows are lists, not one dict per object: a year-end checkpoint holds a few hundred thousand
    lots and disposals, and repeating every key in each would double the file and its parse time.
    Dates and Decimals (never None in these types) travel as ISO and exact strings, converted a
    column at a time, and objects are built positionally: this is the hot path of a resume.
    """

    def __init__(self, cls: type, names: tuple[str, ...]):
        init_fields = tuple(f.name for f in fields(cls) if f.init)
        if names != init_fields:  # positional construction below relies on it
            raise TypeError(f"{cls.__name__}: checkpoint columns {names} do not match its fields {init_fields}")
        self.cls, self.names = cls, names
        self._out = [(i, ISO_DATE.__getitem__ if n in _DATES else str) for i, n in enumerate(names) if n in _DATES | _DECIMALS]
        self._in = [(i, FROM_ISO_DATE.__getitem__ if n in _DATES else Decimal) for i, n in enumerate(names) if n in _DATES | _DECIMALS]

    def dump(self, objects: Iterable[Any]) -> dict[str, Any]:
        # Each column read (and converted) straight off the objects, then zipped into rows once:
        # no per-object tuple of every field, no transposition of tens of thousands of them.
        objects = objects if isinstance(objects, list | tuple) else list(objects)
        columns = [map(attrgetter(name), objects) for name in self.names]
        for i, convert in self._out:
            columns[i] = map(convert, columns[i])
        return {"columns": list(self.names), "rows": list(map(list, zip(*columns, strict=True)))}

    def lines(self, objects: Sequence[Any]) -> list[str]:
        """Each object's row as a CSV line (what :mod:`trader.compliance.sealed` keeps)."""
        return list(map(csv_line, self.dump(objects)["rows"])) if objects else []

    def load(self, table: Mapping[str, Any]) -> list[Any]:
        name = self.cls.__name__
        if tuple(table["columns"]) != self.names:
            raise ComplianceError(f"ledger checkpoint: {name} columns: expected {list(self.names)}, got {table['columns']}")
        rows = table["rows"]
        if not rows:
            return []
        try:  # a column at a time; the parsed state stays as it was read
            columns: list[Any] = list(zip(*rows, strict=True))
        except ValueError:
            columns = []
        if len(columns) != len(self.names):
            raise ComplianceError(f"ledger checkpoint: {name} rows: each must have the {len(self.names)} columns")
        for i, parse in self._in:
            columns[i] = map(parse, columns[i])
        return list(map(self.cls, *columns))  # positional: the columns are the fields, in order


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building or dumping a whole ledger.

    Creating a few hundred thousand objects triggers collection after collection, each walking
    everything built so far (measured: it roughly doubles a year-end resume). Nothing here
    creates reference cycles, so there is nothing for the collector to find meanwhile; callers
    with a bounded, allocation-heavy step (an EOD close) may wrap it whole for the same reason.
    Reference counting still frees everything that is not in a cycle.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_LOTS, _DISPOSALS, _WASH = _Table(TaxLot, _LOT_FIELDS), _Table(Disposal, DISPOSAL_FIELDS), _Table(WashSale, WASH_FIELDS)


def ledger_state(ledger: Ledger, *, as_of: dt.date) -> dict[str, Any]:
    """The JSON-ready state of ``ledger`` at the close of ``as_of`` (see the module docstring for what is kept)."""
    # The ledger's internals are read here on purpose: this module is the ledger's persistence,
    # kept apart so that lots.py stays about tax rules.
    with paused_gc():
        return _ledger_state(ledger, as_of)


def _ledger_state(ledger: Ledger, as_of: dt.date) -> dict[str, Any]:
    pending = ledger.pending_losses(as_of)
    sealed, live, washes = _seal(ledger, as_of, pending)
    queues: dict[str, list[str]] = {}
    for piece in pending:  # WashSaleBook keeps each symbol's queue in sale order; so does pending()
        queues.setdefault(piece.symbol, []).append(piece.disposal_id)
    last = ledger._last
    return {
        "format": FORMAT,
        "as_of": as_of.isoformat(),
        "allow_short": ledger.allow_short,
        "cash": str(ledger.cash),
        "seq": ledger._seq,
        "last_fill": None if last is None else {"ts": last[0].isoformat(), "fill_id": last[1]},
        "lots": _LOTS.dump(ledger.open_lots()),
        "disposals": _DISPOSALS.dump(live),
        "sealed": _sealed_state(sealed),
        "wash_sales": _WASH.dump(washes),
        "pending_losses": {symbol: queues[symbol] for symbol in sorted(queues)},
    }


def _seal(ledger: Ledger, as_of: dt.date,
          pending: Iterable[Disposal]) -> tuple[SealedYear, list[Disposal], list[WashSale]]:
    """The ledger's history at the close of ``as_of``: ``(sealed, live disposals, live wash sales)``.

    Live: the pending losses (of any year) and the day's own disposals, in booking order, and
    the wash sales booked on the day. Sealed (:mod:`trader.compliance.sealed`): the ledger's
    sealed year plus its other disposals and wash sales of the tax year, each turned into text
    (and a disposal into its Form 8949 line) once, here. What is final and of an earlier year
    is dropped.
    """
    waiting, year = {id(d) for d in pending}, as_of.year
    live, final = [], []
    for d in ledger.disposals:
        if id(d) in waiting or d.sold == as_of:
            live.append(d)
        elif d.sold.year == year:
            final.append(d)
    final.sort(key=form_8949_key)  # the order form_8949_rows prints them in
    printed = form_8949_rows(final)
    washes = [w for w in ledger.wash_sales if w.booked.year == year]
    today = len(washes)
    while today and washes[today - 1].booked == as_of:  # booked in fill order: the day's are the tail
        today -= 1
    sealed = ledger.sealed.extended(year, keys=list(map(form_8949_key, final)), disposals=_DISPOSALS.lines(final),
                                    lines=form_8949_lines(printed), totals=part_totals(printed),
                                    wash_sales=_WASH.lines(washes[:today]))
    return sealed, live, washes[today:]


def _sealed_state(sealed: SealedYear) -> dict[str, Any]:
    return {"disposal_columns": list(DISPOSAL_FIELDS), "keys": sealed.keys, "disposals": sealed.disposals,
            "form_8949": sealed.lines, "totals": {part: [str(amount) for amount in sealed.totals[part]] for part in PARTS},
            "wash_sale_columns": list(WASH_FIELDS), "wash_sales": sealed.wash_sales}


def restore_ledger(state: Mapping[str, Any]) -> Ledger:
    """A ledger that continues from ``state`` (from :func:`ledger_state`, of any layout in :data:`READABLE`).

    Raises:
        ComplianceError: the state has another format or is inconsistent (a pending loss
            that is not among its disposals).
    """
    if state.get("format") not in READABLE:
        raise ComplianceError(f"ledger checkpoint: format: expected one of {list(READABLE)}, got {state.get('format')!r}")
    with paused_gc():
        return _restore_ledger(state)


def _restore_ledger(state: Mapping[str, Any]) -> Ledger:
    ledger = Ledger(allow_short=bool(state["allow_short"]))
    ledger.cash = Decimal(state["cash"])
    ledger._seq = int(state["seq"])
    if state["last_fill"] is not None:
        last = state["last_fill"]
        ledger._last = (dt.datetime.fromisoformat(last["ts"]), last["fill_id"])
        ledger._seen.add(last["fill_id"])  # the one earlier fill whose key the order check does not refuse
    for lot in _LOTS.load(state["lots"]):
        ledger._positions.setdefault(lot.symbol, {}).setdefault(lot.account, []).append(lot)
    ledger.disposals.extend(_DISPOSALS.load(state["disposals"]))  # format 1: all of them
    as_of = dt.date.fromisoformat(state["as_of"])
    by_id = {disposal.disposal_id: disposal for disposal in ledger.disposals}
    if "sealed" in state:
        ledger.sealed = _restore_sealed(state["sealed"], as_of.year)
        ledger._wash.adjustments.extend(_WASH.load(state["wash_sales"]))
    else:  # layout 1: the tax year's wash sales in booking order; those of earlier days (a prefix) are sealed now
        washes = _WASH.load(state["wash_sales"])
        today = bisect_left(washes, as_of, key=attrgetter("booked"))
        ledger.sealed = NOTHING_SEALED.extended(as_of.year, wash_sales=_WASH.lines(washes[:today]))
        ledger._wash.adjustments.extend(washes[today:])
    for symbol, ids in state["pending_losses"].items():
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ComplianceError(f"ledger checkpoint: pending_losses: {symbol}: disposal {missing[0]} is not in the checkpoint")
        ledger._wash._pending[symbol] = [by_id[i] for i in ids]
    return ledger


def _restore_sealed(table: Mapping[str, Any], year: int) -> SealedYear:
    """The sealed year as it was read: checked for shape, never parsed (see :mod:`trader.compliance.sealed`)."""
    for name, expected in (("disposal_columns", DISPOSAL_FIELDS), ("wash_sale_columns", WASH_FIELDS)):
        if tuple(table[name]) != expected:
            raise ComplianceError(f"ledger checkpoint: sealed {name}: expected {list(expected)}, got {table[name]}")
    keys, disposals, lines, washes = table["keys"], table["disposals"], table["form_8949"], table["wash_sales"]
    # Checked a column at a time in C (map, set, sorted): these are 10^5 lines at year end.
    if not len(keys) == len(disposals) == len(lines) or not set(map(type, chain(keys, disposals, lines, washes))) <= {str}:
        raise ComplianceError("ledger checkpoint: sealed: keys, disposals and form_8949 must be as many lines of text")
    if keys != sorted(keys):
        raise ComplianceError("ledger checkpoint: sealed keys: not in Form 8949 order")
    problem = f"ledger checkpoint: sealed totals: expected 4 decimal amounts for each of {list(PARTS)}"
    try:
        totals = {part: tuple(map(Decimal, table["totals"][part])) for part in PARTS}
    except (KeyError, TypeError, ArithmeticError):
        raise ComplianceError(problem) from None
    if any(len(amounts) != 4 for amounts in totals.values()):
        raise ComplianceError(problem)
    return SealedYear(year, keys, disposals, lines, totals, washes)


def pruned_day_close(close: DayClose) -> DayClose:
    """What ``restore_day_close(loads(dumps_day_close(close)))`` gives, built from ``close``'s own objects.

    The same selection as :func:`ledger_state` (open lots, the tax year's disposals, sealed or
    live, and wash sales, losses still pending), sharing the lots, disposals and fills instead
    of parsing them again: a process that has just saved a close can keep using it as if read
    back. Treat both as read-only. Saving the pruned close (rather than ``close``) gives the
    same bytes without rendering the newly sealed disposals a second time.
    """
    old, as_of = close.ledger, close.day
    with paused_gc():
        pending = old.pending_losses(as_of)
        ledger = Ledger(allow_short=old.allow_short)
        ledger.cash, ledger._seq, ledger._last = old.cash, old._seq, old._last
        if old._last is not None:
            ledger._seen.add(old._last[1])
        for lot in old.open_lots():
            ledger._positions.setdefault(lot.symbol, {}).setdefault(lot.account, []).append(lot)
        ledger.sealed, live, washes = _seal(old, as_of, pending)
        ledger.disposals.extend(live)
        ledger._wash.adjustments.extend(washes)
        for piece in pending:
            ledger._wash._pending.setdefault(piece.symbol, []).append(piece)
        ledger._wash._pending = {symbol: ledger._wash._pending[symbol] for symbol in sorted(ledger._wash._pending)}
    return DayClose(day=as_of, ledger=ledger, roll_forward=close.roll_forward,
                    closing_marks={symbol: close.closing_marks[symbol] for symbol in sorted(close.closing_marks)},
                    day_fills=close.day_fills)


def day_close_state(close: DayClose) -> dict[str, Any]:
    """Everything :func:`~trader.compliance.reports.write_reports` needs about a closed day, JSON-ready."""
    return {
        "format": FORMAT,
        "day": close.day.isoformat(),
        "ledger": ledger_state(close.ledger, as_of=close.day),
        "roll_forward": {name: str(getattr(close.roll_forward, name)) for name in _ROLL_FIELDS},
        "closing_marks": {symbol: str(close.closing_marks[symbol]) for symbol in sorted(close.closing_marks)},
        "day_fills": [fill.to_row() for fill in close.day_fills],
    }


def restore_day_close(state: Mapping[str, Any]) -> DayClose:
    """The :class:`DayClose` saved by :func:`day_close_state` (its ledger pruned as described above)."""
    day = dt.date.fromisoformat(state["day"])
    # "income" (dividends) came later: a checkpoint without it had none.
    roll = RollForward(day=day, **{name: Decimal(state["roll_forward"].get(name, "0")) for name in _ROLL_FIELDS})
    return DayClose(day=day, ledger=restore_ledger(state["ledger"]), roll_forward=roll,
                    closing_marks={symbol: Decimal(price) for symbol, price in state["closing_marks"].items()},
                    day_fills=tuple(ComplianceFill.from_row(row) for row in state["day_fills"]))


def dumps_day_close(close: DayClose, **extra: Any) -> bytes:
    """The checkpoint file's bytes: :func:`day_close_state` plus ``extra`` top-level keys, deterministic."""
    state = {**day_close_state(close), **extra}
    with paused_gc():
        # The state's own values are str, int, bool and None; a float (whose text the two
        # encoders may write differently) can only come in through ``extra``.
        return _dumps(state, fast=not any(isinstance(v, float | dict | list) for v in extra.values()), newline=True)


def _dumps(state: Mapping[str, Any], *, fast: bool = True, newline: bool = False) -> bytes:
    """``json.dumps(state, sort_keys=True, separators=(",", ":"))`` as bytes (then ``\\n`` with ``newline``),
    by orjson when that gives the same bytes.

    orjson is ~5x faster on a year-end checkpoint (tens of MB); the json module stays the
    reference, so that checkpoints already archived keep matching byte for byte.
    """
    data = None
    if fast:
        try:
            data = orjson.dumps(state, option=orjson.OPT_SORT_KEYS | (orjson.OPT_APPEND_NEWLINE if newline else 0))
        except TypeError:  # e.g. an integer beyond 64 bits
            pass
    # Where json.dumps(ensure_ascii=True) and orjson may differ: non-ASCII text (json escapes
    # it, orjson writes UTF-8), DEL (json escapes it) and the \uXXXX form of control characters.
    # Both write raw printable ASCII and the short escapes (\n, \", ...) alike.
    if data is None or not data.isascii() or b"\x7f" in data or _ESCAPE.search(data):
        return json.dumps(state, sort_keys=True, separators=(",", ":")).encode() + (b"\n" if newline else b"")
    return data


#: ``\\u`` in the encoded text. A regex, not ``in``: the sealed CSV lines put ~10^5 backslashes (escaped quotes)
#: in a year-end checkpoint, and a substring search restarting at each took ~3x longer.
_ESCAPE = re.compile(rb"\\u")


def loads(data: bytes | str) -> dict[str, Any]:
    """Parse a checkpoint file (the inverse of :func:`dumps_day_close`, before restoring)."""
    with paused_gc():
        state = orjson.loads(data)
    if not isinstance(state, dict) or state.get("format") not in READABLE:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ComplianceError(f"ledger checkpoint: format: expected one of {list(READABLE)}, got {found!r}")
    return state
