"""Slicing a parent order: the volume profile, the participation test and the TWAP/VWAP child schedule. Pure functions.

**Volume profile** (:func:`volume_profiles`): per symbol, the mean volume of each *bar-of-day slot* (the New York
time of a bar's open, e.g. 09:30) over the complete sessions before the decision's session, from bars closed by
the decision time only (DESIGN.md §3.1: open time ≤ decision − timeframe). ``mean_bar`` is the mean volume of
every such bar, today's closed bars included: the fallback when a slot has no history.

**Participation** (:func:`expected_volume`): the volume expected over the next ``horizon`` bars is the sum of the
profile over their slots (``mean_bar`` for a slot without history); an order is sliced when its quantity exceeds
``participation_threshold`` of it. Without any volume history the expected volume is unknown and the order is
sliced (the careful side).

**Schedule** (:func:`build_schedule`): ``n`` children over ``horizon`` bars; child ``j`` is due at the decision time
plus ``⌊j·horizon/n⌋`` bars and covers the bars up to the next child's. TWAP weighs a child by the bars it covers
(equal when ``n = horizon``); VWAP by the profile's volume in those bars. Quantities are split exactly (largest
remainder) in units of the parent's smallest digit (whole shares for a whole-share order), so the children sum to
the parent; a child that would get nothing is dropped.

Example:
    >>> import datetime as dt
    >>> from decimal import Decimal as D
    >>> now = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
    >>> [(s.index, s.due.strftime("%H:%M"), s.qty) for s in twap_schedule(D(402), now=now, horizon=4, n=4)]
    [(0, '15:00', Decimal('101')), (1, '15:15', Decimal('101')), (2, '15:30', Decimal('100')), (3, '15:45', Decimal('100'))]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from zoneinfo import ZoneInfo

from trader.brokers.bars import Bar
from trader.domain import ZERO, Symbol

NEW_YORK = ZoneInfo("America/New_York")
STEP = dt.timedelta(minutes=15)


@dataclass(frozen=True, kw_only=True)
class Slice:
    """One child of a parent: its index, when it may first go out, and its quantity."""

    index: int
    due: dt.datetime
    qty: Decimal


@dataclass(frozen=True, kw_only=True)
class VolumeProfile:
    """Mean volume per bar-of-day slot (New York time of the bar's open) over ``sessions`` complete sessions."""

    by_slot: Mapping[dt.time, Decimal] = field(default_factory=dict)
    sessions: int = 0
    #: Mean volume of every bar closed by the decision (today's too); ``None`` without any bar.
    mean_bar: Decimal | None = None

    def slot_volume(self, ts: dt.datetime) -> Decimal | None:
        """The profile's volume for the bar opening at ``ts`` (``mean_bar`` when that slot has no history)."""
        return self.by_slot.get(slot_of(ts), self.mean_bar)


def slot_of(ts: dt.datetime) -> dt.time:
    """The bar-of-day slot of a bar opening at ``ts``: its New York wall-clock time."""
    return ts.astimezone(NEW_YORK).time()


def volume_profiles(bars: Sequence[Bar], *, asof: dt.datetime, step: dt.timedelta = STEP) -> dict[Symbol, VolumeProfile]:
    """A :class:`VolumeProfile` per symbol from ``bars``; bars not closed by ``asof`` are ignored (no look-ahead)."""
    today = asof.astimezone(NEW_YORK).date()
    per_slot: dict[Symbol, dict[dt.time, list[Decimal]]] = {}
    days: dict[Symbol, set[dt.date]] = {}
    closed: dict[Symbol, list[Decimal]] = {}
    for bar in bars:
        if bar.ts + step > asof:
            continue
        closed.setdefault(bar.symbol, []).append(bar.volume)
        day = bar.ts.astimezone(NEW_YORK).date()
        if day < today:
            per_slot.setdefault(bar.symbol, {}).setdefault(slot_of(bar.ts), []).append(bar.volume)
            days.setdefault(bar.symbol, set()).add(day)
    out = {}
    for symbol, volumes in closed.items():
        slots = {slot: sum(v, ZERO) / len(v) for slot, v in per_slot.get(symbol, {}).items()}
        out[symbol] = VolumeProfile(by_slot=slots, sessions=len(days.get(symbol, ())), mean_bar=sum(volumes, ZERO) / len(volumes))
    return out


def expected_volume(profile: VolumeProfile | None, *, now: dt.datetime, horizon: int, step: dt.timedelta = STEP) -> Decimal | None:
    """Volume expected over the ``horizon`` bars opening at ``now``, ``now + step``, ...; ``None`` when unknown."""
    if profile is None or profile.mean_bar is None:
        return None
    return sum((profile.slot_volume(now + k * step) or ZERO for k in range(horizon)), ZERO)


def _starts(horizon: int, n: int) -> list[int]:
    """The bar offset of each of ``n`` children spread over ``horizon`` bars, plus the end (``horizon``)."""
    return [j * horizon // n for j in range(n)] + [horizon]


def _unit(qty: Decimal) -> Decimal:
    exponent = qty.normalize().as_tuple().exponent
    return Decimal(1).scaleb(exponent) if isinstance(exponent, int) and exponent < 0 else Decimal(1)


def allocate(qty: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """Split ``qty`` in proportion to ``weights`` exactly, in units of its smallest digit (largest remainder).

    Example:
        >>> allocate(Decimal(10), [Decimal(1), Decimal(1), Decimal(1)])
        [Decimal('4'), Decimal('3'), Decimal('3')]
        >>> allocate(Decimal("1.5"), [Decimal(3), Decimal(1)])
        [Decimal('1.1'), Decimal('0.4')]
    """
    unit = _unit(qty)
    units = int(qty / unit)
    total = sum(weights, ZERO)
    if total <= 0:
        raise ValueError(f"allocate: weights {list(weights)} sum to {total}")
    raw = [units * w / total for w in weights]
    floors = [int(r.to_integral_value(rounding=ROUND_DOWN)) for r in raw]
    left = units - sum(floors)
    for j in sorted(range(len(raw)), key=lambda j: (-(raw[j] - floors[j]), j))[:left]:
        floors[j] += 1
    return [unit * f for f in floors]


def _slices(qty: Decimal, weights: Sequence[Decimal], starts: Sequence[int], now: dt.datetime, step: dt.timedelta) -> tuple[Slice, ...]:
    parts = allocate(qty, weights)
    kept = [(starts[j], q) for j, q in enumerate(parts) if q > 0]
    return tuple(Slice(index=i, due=now + start * step, qty=q) for i, (start, q) in enumerate(kept))


def twap_schedule(qty: Decimal, *, now: dt.datetime, horizon: int, n: int, step: dt.timedelta = STEP) -> tuple[Slice, ...]:
    """``n`` children over ``horizon`` bars, each weighted by the bars it covers (equal when ``n = horizon``)."""
    starts = _starts(horizon, n)
    return _slices(qty, [Decimal(starts[j + 1] - starts[j]) for j in range(n)], starts, now, step)


def vwap_schedule(qty: Decimal, profile: VolumeProfile | None, *, now: dt.datetime, horizon: int, n: int,
                  min_sessions: int, step: dt.timedelta = STEP) -> tuple[tuple[Slice, ...], str]:
    """``n`` children weighted by the profile's volume in the bars each covers; TWAP (and why) on a short profile."""
    if profile is None or profile.sessions < min_sessions:
        have = 0 if profile is None else profile.sessions
        return twap_schedule(qty, now=now, horizon=horizon, n=n, step=step), (
            f"vwap fell back to twap: {have} complete sessions of volume history, {min_sessions} needed")
    bars = [profile.by_slot.get(slot_of(now + k * step)) for k in range(horizon)]
    if any(v is None for v in bars) or sum((v for v in bars if v is not None), ZERO) <= 0:
        return twap_schedule(qty, now=now, horizon=horizon, n=n, step=step), (
            "vwap fell back to twap: the profile has no volume for some bars of the horizon")
    starts = _starts(horizon, n)
    weights = [sum((v for v in bars[starts[j]:starts[j + 1]] if v is not None), ZERO) for j in range(n)]
    return _slices(qty, weights, starts, now, step), f"vwap over a {profile.sessions}-session volume profile"


def children_for(qty: Decimal, price: Decimal | None, *, n: int, min_child_notional: Decimal) -> int:
    """How many children ``qty`` can make with none worth less than ``min_child_notional`` (at most ``n``).

    Example:
        >>> children_for(Decimal(100), Decimal(10), n=4, min_child_notional=Decimal(300))
        3
    """
    if min_child_notional <= 0 or price is None or price <= 0:
        return n
    return max(1, min(n, int(qty * price / min_child_notional)))


def build_schedule(algo: str, qty: Decimal, profile: VolumeProfile | None, *, now: dt.datetime, horizon: int, n: int,
                   min_sessions: int, step: dt.timedelta = STEP) -> tuple[tuple[Slice, ...], str]:
    """The children of a parent of ``qty`` (``algo`` ``twap`` or ``vwap``) and a note on how they were weighed."""
    if algo == "vwap":
        return vwap_schedule(qty, profile, now=now, horizon=horizon, n=n, min_sessions=min_sessions, step=step)
    if algo != "twap":
        raise ValueError(f"execution.algo: {algo!r} is not twap or vwap")
    return twap_schedule(qty, now=now, horizon=horizon, n=n, step=step), f"twap over {horizon} bars"
