"""The decision cycle: the same code for sim, paper, live and dry-run; only the broker differs (DESIGN.md §4.6).

Each :class:`Tick` (a bar close in a replay, a bar boundary live) runs one :meth:`Runner.cycle`:

1. **sync** — the broker's events since the last cycle (fills, cancels, rejections) update
   the stored orders; each fill is recorded once and moves its position and the cash
   ledger. Then the book is checked: fills (plus the shares splits added) sum to positions and, in a ``strict`` run (sim),
   cash and positions equal the venue's. There a broken invariant halts trading (fail
   closed); elsewhere (the venue's numbers move between two calls) it is reported in the
   cycle record for reconciliation to settle;
2. **kill switch** — the trading state is read from the store. HALTED lets only cancels
   through: working orders that add risk are cancelled (ones that only shrink a position,
   such as the flatten orders, keep working) and nothing is sized;
3. **drawdown tiers** — at the flatten-and-halt tier the runner sets HALTED, cancels every
   working order and closes every position; shallower tiers scale the targets down;
4. **predictions** — ``POST /predict`` (``as_of`` = the tick in a replay). A failure sends no
   new orders; after ``prediction.max_consecutive_failures`` failed cycles in a row the
   trading state goes to HALTED with the reason;
5. **sizing and risk** — :func:`~trader.sizing.size_orders`, then every order through
   :meth:`~trader.risk.RiskEngine.check_all`; the kill switch is re-read before each submit. With
   ``execution.algo`` a large order becomes a parent whose child slices go out over the next bars
   (:class:`~trader.execution.ExecutionDesk`: unsent slices count as pending, each child is checked);
6. **routing** — an order is stored (NEW) before it is sent, so that a crash mid-submit leaves
   a ``client_order_id`` to look up; a lost answer is looked up at the venue, never resent blindly.

Durability: a cycle commits three batches — the venue's events (step 1); the decisions and the
orders, NEW (step 6, the one commit synced to disk, before any order leaves); the venue's answers
with the equity mark and the ``cycle`` record (the last). The first and last are not synced by
themselves (``durable=False``: the next durable commit syncs them, one WAL). A power cut can thus
lose events, answers and cycle records, never an order that was sent: those orders are still
working in the store, the venue reports them again, and a re-run tick's orders are duplicates.

With ``exits:`` set in ``trader.yaml``, :mod:`trader.exits` runs between steps 1 and 2: it
closes positions at their stop-loss, take-profit, trailing or time stop (through the risk
engine; an exit only reduces, so it passes HALTED too) and, with venue brackets, keeps their
exits resting at the venue and sends entries from flat as brackets.

Every step is an audit record (``prediction_batch``, ``risk_decision`` — with the prediction,
model version and feature time —, ``order_submit``, ``order_accepted``, ``fill``, ...,
``cycle``); ``trader explain`` reads them back.

Ticks come from :func:`replay_ticks` (a day of bars, e.g. from
:class:`~trader.brokers.bars.WarehouseBars`) or :func:`live_ticks` (bar boundaries on the wall clock).

Example:
    >>> from decimal import Decimal as D
    >>> bar = Bar(symbol="AAA", ts=dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC), open=D(10), high=D(11), low=D(9),
    ...           close=D("10.5"), volume=D(100))
    >>> [(t.ts.isoformat(), t.prices, t.as_of == t.ts) for t in replay_ticks([bar], timeframe="15m")]
    [('2024-03-05T14:45:00+00:00', {'AAA': Decimal('10.5')}, True)]
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Protocol

from trader.brokers.bars import TIMEFRAMES, Bar, BarFeed
from trader.brokers.base import Broker
from trader.config import TraderConfig
from trader.corporate_actions import CorporateActionBook, split_shares
from trader.domain import (
    ZERO,
    Account,
    CancelOrder,
    Fill,
    Order,
    OrderAccepted,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    Position,
    SubmitOrder,
    Symbol,
    TradingState,
)
from trader.errors import (
    BrokerError,
    BrokerRateLimitError,
    BrokerUnavailableError,
    DomainError,
    IllegalTransitionError,
    PredictionError,
    TraderError,
)
from trader.execution import ExecutionDesk, lineage
from trader.exits import ExitMonitor
from trader.history import MarketHistory, MarketSnapshot
from trader.market_hours import active_profile
from trader.predictions import PredictionBatch, PredictionClient
from trader.risk import RiskContext, RiskDecision, RiskEngine
from trader.sizing import size_orders
from trader.store import StoreTx, TraderStore

_BY = "runner"
_log = logging.getLogger("alphaline.trader")
_DAY = dt.timedelta(days=1)
_MINUTE = dt.timedelta(minutes=1)
_EVENT_KINDS = {"OrderAccepted": "order_accepted", "OrderFilled": "fill", "OrderRejected": "order_rejected",
                "OrderCanceled": "order_canceled", "OrderExpired": "order_expired"}


_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


def _newest(batch: PredictionBatch) -> dt.datetime:
    return max((p.feature_ts for p in batch.predictions), default=_NEVER)


# -- ticks --------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Tick:
    """One decision point: its time, the last prices known then, and the prediction ``as_of`` (``None`` = latest)."""

    ts: dt.datetime
    prices: Mapping[Symbol, Decimal] = field(default_factory=dict)
    as_of: dt.datetime | None = None


def _step(timeframe: str) -> dt.timedelta:
    if timeframe not in TIMEFRAMES:
        raise TraderError(f"timeframe: {timeframe!r} is not one of {', '.join(TIMEFRAMES)}")
    return TIMEFRAMES[timeframe]


def session_start(ts: dt.datetime | dt.date) -> dt.datetime:
    """Start of the trading day ``ts`` falls on (or of the date), in UTC (the daily loss baseline).

    Equities: midnight in New York; crypto (``ALPHALINE_MARKET=crypto``): the EOD cut, midnight UTC by default.
    """
    profile = active_profile()
    day = profile.trading_day(ts) if isinstance(ts, dt.datetime) else ts
    return profile.day_start(day)


def replay_ticks(bars: Iterable[Bar], *, timeframe: str = "15m") -> list[Tick]:
    """One tick per bar close, with every symbol's latest close, asking predictions ``as_of`` that close.

    A bar is knowable at its close (``ts + timeframe``, DESIGN.md §3.1), never earlier.
    """
    step, by_ts = _step(timeframe), {}
    for bar in bars:
        by_ts.setdefault(bar.ts, []).append(bar)
    last: dict[Symbol, Decimal] = {}
    ticks = []
    for ts in sorted(by_ts):
        last.update({b.symbol: b.close for b in by_ts[ts]})
        ticks.append(Tick(ts=ts + step, prices=dict(last), as_of=ts + step))
    return ticks


def last_closes(feed: BarFeed, symbols: Sequence[str], at: dt.datetime) -> dict[Symbol, Decimal]:
    """Each symbol's close from the latest bar closed by ``at`` (within a week), e.g. from the warehouse."""
    bars = feed.bars(symbols, after=at - 7 * _DAY, until=at - feed.timeframe)
    return {b.symbol: b.close for b in bars}  # sorted by time: the last one wins


def live_ticks(read_prices: Callable[[dt.datetime], Mapping[Symbol, Decimal]], *, timeframe: str = "15m",
               once: bool = False, grace: dt.timedelta = dt.timedelta(seconds=30),
               clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
               sleep: Callable[[float], object] = time.sleep) -> Iterator[Tick]:
    """A tick at each bar boundary on the wall clock (``grace`` after it, for the bar to land in the warehouse).

    The tick's time is the boundary itself, so a restart within the same bar re-derives the
    same ``client_order_id`` values and the duplicate check stops a second order.
    """
    step = _step(timeframe)
    while True:
        now = clock()
        boundary = now - (now - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) % step
        yield Tick(ts=boundary, prices=read_prices(boundary), as_of=None)
        if once:
            return
        wait = (boundary + step + grace - clock()).total_seconds()
        if wait > 0:
            sleep(wait)


@contextmanager
def steady_heap() -> Iterator[None]:
    """Inside the block, the objects alive at its start (modules, config, calendars, the store) are out of the
    cyclic garbage collector's way (:func:`gc.freeze`); they go back when it ends.

    A full collection otherwise walks that whole start-up heap: measured on the 48-symbol
    benchmark, ~50 ms inside one cycle (that cycle was the p99), against ~5 ms frozen.
    Nothing is leaked: garbage frozen with them is collected after the block.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclass(frozen=True, kw_only=True)
class CycleReport:
    """What one cycle did; ``status`` is the one line ``trader status`` shows."""

    ts: dt.datetime
    state: TradingState
    status: str
    submitted: int = 0
    denied: int = 0
    canceled: int = 0
    fills: int = 0
    #: Predictions held because their features were older than the bar this cycle decides on.
    behind: int = 0
    #: No decision: none of the predictions came from the bar that has just closed (see ``Runner._current_bar``).
    refused: bool = False
    cash: Decimal = ZERO
    positions_value: Decimal = ZERO
    equity: Decimal = ZERO
    problems: tuple[str, ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {**self.__dict__, "state": self.state.value, "problems": list(self.problems)}

    def line(self) -> str:
        problems = f" [{len(self.problems)} problems: {self.problems[0]}]" if self.problems else ""
        return (f"{self.ts.isoformat()} {self.state.value:8} equity {self.equity:.2f} cash {self.cash:.2f} "
                f"sent {self.submitted} denied {self.denied} fills {self.fills} — {self.status}{problems}")


@dataclass
class _Answers:
    """The venue's answers to a cycle's orders, recorded with the cycle record (one commit)."""

    events: list[OrderEvent] = field(default_factory=list)
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class CycleObserver(Protocol):
    """Watches each finished cycle (metrics, alerts); ``denials`` counts denied orders by reason code this cycle."""

    def on_cycle(self, report: CycleReport, *, denials: Mapping[str, int], seconds: float) -> None: ...


class Runner:
    """Runs decision cycles against one broker; see the module docstring.

    Args:
        config: the validated ``trader.yaml``.
        store: the state store (kill switch, orders, fills, audit log).
        broker: any :class:`~trader.brokers.base.Broker` (sim, Alpaca paper/live, a fake).
        predictor: any :class:`~trader.predictions.PredictionClient`.
        run_id: part of every ``client_order_id``; the same run, bar and symbol give the same id.
        engine: the risk engine (default: from ``config``).
        strict: compare cash and positions with the venue's every cycle (exact only in a simulator).
        cash_tolerance: the largest local-vs-venue cash difference a strict run accepts.
        observers: told about every finished cycle (:mod:`trader.metrics`, :mod:`trader.alerts`); an observer
            that raises is logged and never stops trading.
        market: trailing bars for ``sizing.optimizer`` and the portfolio risk checks (default: the warehouse,
            when the config asks for either; see :meth:`~trader.history.MarketHistory.from_config`).
        corporate_actions: splits and dividends applied at the first cycle of their ex-date (default: none).

    Example:
        >>> runner = Runner(config=cfg, store=store, broker=broker, predictor=client, run_id="sim-2024-03-05")  # doctest: +SKIP
        >>> reports = runner.run(replay_ticks(bars, timeframe="15m"), before_cycle=broker.advance_to)  # doctest: +SKIP
    """

    def __init__(self, *, config: TraderConfig, store: TraderStore, broker: Broker, predictor: PredictionClient,
                 run_id: str, engine: RiskEngine | None = None, strict: bool = False,
                 cash_tolerance: Decimal = Decimal("0.01"), observers: Sequence[CycleObserver] = (),
                 market: MarketHistory | None = None, corporate_actions: CorporateActionBook | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC), sleep: Callable[[float], object] = time.sleep):
        self.config, self.store, self.broker, self.predictor, self.run_id = config, store, broker, predictor, run_id
        self.engine = engine or RiskEngine.from_config(config)
        self.strict, self.cash_tolerance = strict, cash_tolerance
        self.universe = [Symbol(s) for s in config.universe.symbols]
        self.failures = 0
        self._cash: Decimal | None = None
        self._fill_qty: dict[Symbol, Decimal] = {}
        self._prices: dict[Symbol, Decimal] = {}
        self._cancel_sent: set[str] = set()
        self._last_ts: dt.datetime | None = None
        self.observers = tuple(observers)
        self._denials: Counter[str] = Counter()
        self.market = market if market is not None else MarketHistory.from_config(config)
        self._clock, self._sleep = clock, sleep
        self.execution = ExecutionDesk(config.execution, store=store, run_id=run_id, calendar=self.engine.calendar,
                                       feed=self.market.feed if self.market is not None else None)
        self.exits = ExitMonitor.for_runner(self)
        self.corporate_actions = corporate_actions

    # -- the loop ---------------------------------------------------------------------------
    def start(self) -> None:
        """Take the cash ledger's opening balance from the venue and the fill totals from the store."""
        self._cash = self.broker.account().cash
        self._fill_qty = {}
        for fill in self.store.list_fills():
            self._fill_qty[fill.symbol] = self._fill_qty.get(fill.symbol, ZERO) + fill.signed_qty
        for symbol, shares in split_shares(self.store).items():  # a split adds shares without a fill
            self._fill_qty[symbol] = self._fill_qty.get(symbol, ZERO) + shares
        last = self.store.latest_audit("cycle")
        self._last_ts = dt.datetime.fromisoformat(last.payload["ts"]) if last else None

    def run(self, ticks: Iterable[Tick], *, before_cycle: Callable[[Tick], object] | None = None,
            on_report: Callable[[CycleReport], object] | None = None, limit: int | None = None) -> list[CycleReport]:
        """One cycle per tick, at most ``limit``; ticks at or before the last recorded cycle are skipped (a restart resumes).

        ``before_cycle`` runs first for each tick (a simulator advances its clock there).
        """
        self.start()
        reports: list[CycleReport] = []
        with steady_heap():
            for tick in ticks:
                if limit is not None and len(reports) >= limit:
                    break
                if self._last_ts is not None and tick.ts <= self._last_ts:
                    continue
                if before_cycle is not None:
                    before_cycle(tick)
                reports.append(self.cycle(tick))
                if on_report is not None:
                    on_report(reports[-1])
        return reports

    def cycle(self, tick: Tick) -> CycleReport:
        """One decision cycle at ``tick`` (see the module docstring), then each observer is told about it."""
        started, self._denials = time.perf_counter(), Counter()
        report = self._cycle(tick)
        for observer in self.observers:
            try:
                observer.on_cycle(report, denials=dict(self._denials), seconds=time.perf_counter() - started)
            except Exception:  # monitoring must never stop trading; the traceback goes to the log
                _log.exception("cycle observer %r failed", observer)
        return report

    def _cycle(self, tick: Tick) -> CycleReport:
        if self._cash is None:
            self.start()
        if self._last_ts is not None and tick.ts <= self._last_ts:
            raise DomainError(f"tick {tick.ts.isoformat()}: a cycle at or after it was already run ({self._last_ts.isoformat()})")
        self._apply_corporate_actions(tick)
        counts: Counter[str] = Counter(fills=self._sync())
        self._prices.update(tick.prices)
        positions = self.store.positions()
        account = Account(cash=self._require_cash(), positions=positions)
        try:
            value = account.market_value(self._prices)
        except DomainError as exc:  # no equity mark either: a wrong one would move the drawdown baseline
            return self._finish(tick, self.store.trading_state().state, f"cannot value the book, no orders: {exc}",
                                counts, account, None, ())
        problems = self._invariants(positions)
        state = self.store.trading_state().state
        if problems and self.strict and state is not TradingState.HALTED:
            state = self._halt(tick.ts, f"invariant broken: {problems[0]}")
        answers = _Answers()
        try:
            if self.exits is not None:  # protective exits (trader/exits.py), before anything new is sized
                counts["submitted"] += self.exits.cycle(tick.ts, state, account)
            status = self._decide(tick, state, account, counts, answers)
        except ValueError as exc:  # data the checks cannot use (DomainError included): fail closed, say why
            status = f"no orders: {exc}"
        return self._finish(tick, self.store.trading_state().state, status, counts, account, value, problems, answers)

    def _decide(self, tick: Tick, state: TradingState, account: Account, counts: Counter[str], answers: _Answers) -> str:
        ctx = self._context(tick.ts, state, account)
        if state is TradingState.HALTED:
            counts["canceled"] += self._cancel_working(ctx)
            self.execution.stop_all(tick.ts, "trading is HALTED")
            return f"HALTED ({self.store.trading_state().reason}): only cancels go through"
        portfolio = self.engine.portfolio_status(ctx)
        if portfolio.flatten_and_halt:
            return self._flatten(tick.ts, f"drawdown {portfolio.drawdown:.2%} reached the flatten-and-halt tier "
                                          f"({self.config.risk.drawdown.flatten_and_halt_at:.2%})", counts)
        if self.config.risk.market_hours_only and not self.engine.calendar.is_open(tick.ts):
            return "market closed: events synced, no decisions"
        try:
            batch = self._current_bar(tick, counts)
        except PredictionError as exc:
            return self._prediction_failed(tick.ts, str(exc))
        self.failures = 0
        if isinstance(batch, str):
            return batch  # refused
        pending: dict[Symbol, Decimal] = {}
        for o in ctx.working_orders:
            pending[o.symbol] = pending.get(o.symbol, ZERO) + o.remaining_qty * o.side.sign
        pending = self.execution.with_unsent(pending, tick.ts)  # unsent child slices count as pending (trader/execution)
        sizing = size_orders(batch.predictions, positions={s: p.qty for s, p in account.positions.items()},
                             prices=ctx.prices, equity=ctx.equity, config=self.config.sizing, run_id=self.run_id,
                             decision_ts=tick.ts, size_multiplier=portfolio.size_multiplier, pending=pending,
                             market=ctx.market, min_observations=self.config.history.min_observations)
        decisions = self.execution.check_all(sizing.commands, ctx, self.engine, predictions=batch.predictions)
        self._route(decisions, batch, tick, state, counts, answers)
        notes = [f"{len(sizing.commands)} orders sized (model {batch.model_version})"] + ([sizing.note] if sizing.note else [])
        if portfolio.size_multiplier < 1:
            notes.append(f"drawdown {portfolio.drawdown:.2%}: targets × {portfolio.size_multiplier}")
        if portfolio.daily_loss_breached:
            notes.append(f"daily loss limit reached ({portfolio.daily_return:.2%}): only reducing orders pass")
        return "; ".join(notes)

    # -- state ------------------------------------------------------------------------------
    def _require_cash(self) -> Decimal:
        assert self._cash is not None, "start() sets the cash ledger"
        return self._cash

    def _context(self, now: dt.datetime, state: TradingState, account: Account) -> RiskContext:
        equity = account.equity(self._prices)
        venue = self.broker.account()
        with self.store.snapshot():  # the store's part: one read transaction, one consistent view
            return RiskContext(now=now, trading_state=state, account=account, prices=dict(self._prices),
                               day_start_equity=self.store.first_equity_since(session_start(now)) or equity,
                               peak_equity=max(self.store.peak_equity() or equity, equity), buying_power=venue.buying_power,
                               working_orders=tuple(self.store.working_orders()),
                               # ids are per decision time: a day back covers duplicates
                               known_client_order_ids=self.store.client_order_ids(since=now - _DAY),
                               recent_order_times=self.store.order_times_since(now - _MINUTE),
                               market=self._market(now) if state is not TradingState.HALTED else None)

    def _market(self, now: dt.datetime) -> MarketSnapshot | None:
        """The trailing bars closed by ``now``; unreadable: ``None`` (the optimiser falls back, portfolio checks deny)."""
        if self.market is None:
            return None
        try:
            return self.market.snapshot(self.universe, until=now)
        except TraderError as exc:
            _log.warning("market history unavailable at %s: %s", now.isoformat(), exc)
            return None

    def _invariants(self, positions: dict[Symbol, Position]) -> tuple[str, ...]:
        problems = [f"{s}: fills sum to {self._fill_qty.get(s, ZERO)} but the position is {positions[s].qty if s in positions else 0}"
                    for s in sorted(set(positions) | set(self._fill_qty))
                    if (positions[s].qty if s in positions else ZERO) != self._fill_qty.get(s, ZERO)]
        if self.strict:
            venue_cash = self.broker.account().cash
            if abs(venue_cash - self._require_cash()) > self.cash_tolerance:
                problems.append(f"cash {self._cash} differs from the venue's {venue_cash}")
            venue = {s: p.qty for s, p in self.broker.positions().items() if p.qty != 0}
            local = {s: p.qty for s, p in positions.items() if p.qty != 0}
            problems += [f"{s}: position {local.get(s, 0)} but the venue holds {venue.get(s, 0)}"
                         for s in sorted(set(venue) | set(local)) if venue.get(s) != local.get(s)]
        return tuple(problems)

    def _finish(self, tick: Tick, state: TradingState, status: str, counts: Counter[str], account: Account,
                value: Decimal | None, problems: tuple[str, ...], answers: _Answers | None = None) -> CycleReport:
        """Record the venue's answers to the cycle's orders, the equity mark (when the book could be valued) and the
        cycle, in one commit that is not synced by itself (see the module docstring: nothing sent depends on it)."""
        report = CycleReport(ts=tick.ts, state=state, status=status, submitted=counts["submitted"], denied=counts["denied"],
                             canceled=counts["canceled"], fills=counts["fills"], behind=counts["behind"],
                             refused=bool(counts["refused"]), cash=account.cash, positions_value=value or ZERO,
                             equity=account.cash + (value or ZERO), problems=problems)
        answers = answers or _Answers()
        with self.store.transaction(durable=False) as tx:
            # The orders are read again, not taken from _route: sending may have changed them (a bracket entry, trader/exits.py).
            new_fills = self._record_events(tx, answers.events, notes=answers.notes, ts=tick.ts)
            if value is not None:
                tx.record_equity(ts=tick.ts, equity=report.equity, cash=report.cash)
            tx.append_audit("cycle", report.to_record() | {"run_id": self.run_id}, ts=tick.ts)
        self._book(new_fills)
        self._last_ts = tick.ts
        return report

    def _audit(self, kind: str, ts: dt.datetime, payload: dict[str, Any]) -> None:
        self.store.append_audit(kind, payload | {"run_id": self.run_id}, ts=ts)

    def _halt(self, now: dt.datetime, reason: str) -> TradingState:
        self.store.set_trading_state(TradingState.HALTED, reason=reason, changed_by=_BY, at=now)
        return TradingState.HALTED

    def _apply_corporate_actions(self, tick: Tick) -> None:
        """Splits and dividends due by the tick's session, once each, before its fills (:mod:`trader.corporate_actions`)."""
        if self.corporate_actions is None:
            return
        for done in self.corporate_actions.apply_due(self.store, now=tick.ts, run_id=self.run_id):
            self._fill_qty[done.symbol] = self._fill_qty.get(done.symbol, ZERO) + done.share_delta
            self._cash = self._require_cash() + done.cash
            if done.symbol in self._prices:  # a pre-ex-date last price, in the ex-date's terms (sizing, collar)
                self._prices[done.symbol] = done.action.restate_price(self._prices[done.symbol])

    # -- events -----------------------------------------------------------------------------
    def _sync(self) -> int:
        """Apply the broker's new events; returns how many new fills were recorded."""
        return self._apply(self.broker.poll_events())

    def _apply(self, events: Sequence[OrderEvent], *, notes: Sequence[tuple[str, dict[str, Any]]] = (),
               ts: dt.datetime | None = None) -> int:
        """Apply events (and append ``notes`` at ``ts``) in one transaction; returns the number of new fills."""
        if not events and not notes:
            return 0
        # Not synced by itself: the cycle's next durable commit (the orders before they leave) syncs
        # it with it (one WAL); nothing is sent on it before that. See the module docstring.
        with self.store.transaction(durable=False) as tx:
            new_fills = self._record_events(tx, events, notes=notes, ts=ts)
        return self._book(new_fills)

    def _record_events(self, tx: StoreTx, events: Sequence[OrderEvent], *, notes: Sequence[tuple[str, dict[str, Any]]] = (),
                       ts: dt.datetime | None = None) -> list[Fill]:
        """Write events (order states, fills, audit records) and ``notes`` in ``tx``; returns the new fills."""
        if not events:
            known: dict[str, Order | None] = {}
        else:  # this batch's view of the orders (the store does not see its own pending writes); one read
            # for the working orders, where nearly every event belongs
            known = {o.client_order_id: o for o in self.store.working_orders()}
        tx.expect_fills(e.fill.fill_id for e in events if isinstance(e, OrderFilled))
        new_fills = []
        for event in events:
            cid = event.client_order_id
            if cid not in known:
                known[cid] = self.store.get_order(cid)
            payload: dict[str, Any] = {"client_order_id": cid, "event": type(event).__name__, "run_id": self.run_id}
            if isinstance(event, OrderFilled):
                if not tx.record_fill(event.fill):
                    continue  # a replayed fill: already recorded, already applied
                new_fills.append(event.fill)
                payload["fill"] = event.fill.to_record()
            else:
                payload |= {k: v for k, v in event.__dict__.items() if k not in ("client_order_id", "ts")}
            payload["note"] = self._move(tx, known, event)
            tx.append_audit(_EVENT_KINDS.get(type(event).__name__, "order_event"), payload, ts=event.ts)
        for kind, note in notes:
            assert ts is not None
            tx.append_audit(kind, note | {"run_id": self.run_id}, ts=ts)
        return new_fills

    def _book(self, new_fills: Sequence[Fill]) -> int:
        """Move the cash ledger and the fill totals by fills just committed (the ledger follows what is stored)."""
        for fill in new_fills:
            self._cash = self._require_cash() - fill.signed_qty * fill.price - fill.fee
            self._fill_qty[fill.symbol] = self._fill_qty.get(fill.symbol, ZERO) + fill.signed_qty
        return len(new_fills)

    @staticmethod
    def _move(tx: StoreTx, orders: dict[str, Order | None], event: OrderEvent) -> str:
        order = orders[event.client_order_id]
        if order is None:
            return "event for an order this trader did not store; reconciliation should review it"
        try:
            orders[event.client_order_id] = order = order.apply(event)
        except IllegalTransitionError as exc:
            return str(exc)
        tx.save_order(order)
        return ""

    # -- commands ---------------------------------------------------------------------------
    def _route(self, decisions: list[RiskDecision], batch: PredictionBatch, tick: Tick, state: TradingState,
               counts: Counter[str], answers: _Answers) -> None:
        """Record the decisions and every approved order (NEW) in one durable commit, send them; the answers go to
        ``answers``, which the cycle record's commit writes.

        Each order is durable before it leaves; an answer lost in a crash before the cycle's last commit
        is found again by ``client_order_id``, the path a lost response takes anyway.
        """
        now = tick.ts
        approved = [d.command.order for d in decisions if d.approved and isinstance(d.command, SubmitOrder)]
        with self.store.transaction() as tx:
            tx.append_audit("prediction_batch", self._batch_record(batch, tick), ts=now)
            for decision in decisions:
                prediction = decision.command.prediction if isinstance(decision.command, SubmitOrder) else None
                tx.append_audit("risk_decision", decision.to_record() | {"run_id": self.run_id,
                                "prediction": prediction.to_record() if prediction else None}, ts=now)
            for order in approved:
                tx.save_order(order)
                tx.append_audit("order_submit", {"client_order_id": order.client_order_id, "venue": self.broker.venue,
                                                 "run_id": self.run_id, "order": order.to_record()} | lineage(order.client_order_id), ts=now)
        counts["denied"] += len(decisions) - len(approved)
        self._denials.update(d.reason.value for d in decisions if not d.approved)
        for order in approved:
            current = self.store.trading_state().state  # the kill switch, re-read before every order (DESIGN §3.5)
            answer = self._send(order, now) if current is state else OrderRejected(
                client_order_id=order.client_order_id, ts=now, reason=f"not sent: trading state changed to {current.value} mid-cycle")
            if isinstance(answer, str):
                answers.notes.append(("order_unknown", {"client_order_id": order.client_order_id, "reason": answer}))
            else:
                answers.events.append(answer)
            counts["submitted" if not isinstance(answer, OrderRejected) else "denied"] += 1
            if isinstance(answer, OrderRejected):
                self._denials["REJECTED_BY_VENUE" if current is state else "TRADING_STATE_CHANGED"] += 1

    def _send(self, order: Order, now: dt.datetime) -> OrderAccepted | OrderRejected | str:
        """The venue's answer, or why the order's fate is unknown (it then stays NEW: never resent blindly)."""
        try:  # with venue exits, an entry that opens a position goes out as a bracket (trader/exits.py)
            return self.exits.submit(order) if self.exits is not None else self.broker.submit(order)
        except BrokerUnavailableError as exc:
            found = self.broker.get_order_by_client_id(order.client_order_id)
            if found is None or found.order_id is None:
                # Left NEW (working), it blocks a second order for this symbol and side until
                # reconciliation settles it.
                return f"venue unavailable and the order is not found by client_order_id: {exc}"
            return OrderAccepted(client_order_id=order.client_order_id, ts=now, order_id=found.order_id)
        except BrokerRateLimitError as exc:
            return OrderRejected(client_order_id=order.client_order_id, ts=now, reason=f"not placed, rate limited: {exc}")
        except BrokerError as exc:
            return OrderRejected(client_order_id=order.client_order_id, ts=now, reason=f"refused by the venue: {exc}")

    def _cancel_working(self, ctx: RiskContext) -> int:
        """HALTED: cancel every working order that adds risk. Orders that only shrink a position (the
        flatten-and-halt closing orders among them) keep working: cancelling them would leave risk on."""
        sent = 0
        for order in ctx.working_orders:
            held = ctx.account.position(order.symbol).qty
            reducing = held != 0 and (held > 0) != (order.side.sign > 0) and order.remaining_qty <= abs(held)
            if order.client_order_id in self._cancel_sent or reducing:
                continue
            command = CancelOrder(client_order_id=order.client_order_id, symbol=order.symbol, reason="trading is HALTED")
            decision = self.engine.check(command, ctx)
            self._audit("risk_decision", ctx.now, decision.to_record())
            try:
                self.broker.cancel(order.client_order_id)
            except BrokerError as exc:
                self._audit("cancel_failed", ctx.now, {"client_order_id": order.client_order_id, "reason": str(exc)})
                continue
            self._cancel_sent.add(order.client_order_id)
            sent += 1
        return sent

    def _flatten(self, now: dt.datetime, reason: str, counts: Counter[str]) -> str:
        """Flatten-and-halt: HALTED first (nothing new may start), then cancel everything and close every position."""
        self._halt(now, reason)
        canceled = self.broker.cancel_all()
        closing = self.broker.close_all()
        with self.store.transaction() as tx:
            for order in closing:
                tx.save_order(order)
            tx.append_audit("flatten", {"reason": reason, "canceled": list(canceled), "run_id": self.run_id,
                                        "closing_orders": [o.to_record() for o in closing]}, ts=now)
        self._cancel_sent.update(canceled)
        counts["canceled"] += len(canceled)
        return f"HALTED: {reason}; {len(canceled)} orders cancelled, {len(closing)} closing orders sent"

    def _current_bar(self, tick: Tick, counts: Counter[str]) -> PredictionBatch | str:
        """Predictions on the bar that closed at ``tick.ts``; when none are, the cycle is refused (audited): why.

        The decision is on the bar that has just closed, in a replay and live alike: its close is the
        tick's time. Live (``as_of`` unset) the features reach the online store a little after the
        boundary, so the service is asked again every ``prediction.feature_poll_s`` until the newest
        ``feature_ts`` reaches the bar or ``prediction.feature_wait`` has passed. A symbol whose
        features are still older is held like a stale prediction (its position kept, no order), and
        counted in ``behind``.
        """
        batch = self.predictor.predict(self.universe, as_of=tick.as_of)
        cfg = self.config.prediction
        if not cfg.require_current_bar or not batch.predictions:  # nothing asked about, nothing to wait for
            return batch
        if tick.as_of is None:
            deadline = self._clock() + cfg.feature_wait
            while _newest(batch) < tick.ts and self._clock() < deadline:
                self._sleep(cfg.feature_poll_s)
                batch = self.predictor.predict(self.universe, as_of=None)
        behind = [p for p in batch.predictions if p.feature_ts < tick.ts]
        counts["behind"] = len(behind)
        if len(behind) < len(batch.predictions):
            held = {p.symbol: replace(p, stale=True) for p in behind}
            return PredictionBatch(batch.model_version, tuple(held.get(p.symbol, p) for p in batch.predictions))
        counts["refused"] = 1
        newest = _newest(batch)
        reason = (f"refused: no features for the bar closing at {tick.ts.isoformat()} by the deadline "
                  f"(newest {newest.isoformat()}); nothing decided on an older bar")
        self._audit("cycle_refused", tick.ts, {"bar_close": tick.ts, "newest_feature_ts": newest, "symbols": len(behind),
                                               "reason": reason})
        return reason

    def _prediction_failed(self, now: dt.datetime, reason: str) -> str:
        self.failures += 1
        limit = self.config.prediction.max_consecutive_failures
        self._audit("prediction_failure", now, {"reason": reason, "consecutive": self.failures, "limit": limit})
        if self.failures >= limit:
            self._halt(now, f"prediction service failed {self.failures} cycles in a row: {reason}")
            return f"HALTED after {self.failures} prediction failures in a row: {reason}"
        return f"no new orders, prediction failed ({self.failures} of {limit} before HALTED): {reason}"

    def _batch_record(self, batch: PredictionBatch, tick: Tick) -> dict[str, Any]:
        return {"model_version": batch.model_version, "as_of": tick.as_of, "count": len(batch.predictions),
                "predictions": [{k: v for k, v in p.to_record().items() if k not in ("model_version", "explanation")}
                                for p in batch.predictions]}  # explanations go with each order's decision
