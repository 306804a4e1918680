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

Ticks, the cycle report and the observers' protocol are :mod:`trader.cycle`'s (re-exported here); the
venue's events are written by :mod:`trader.runner_events`, the commands sent by :mod:`trader.runner_commands`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from trader.brokers.base import Broker
from trader.config import TraderConfig
from trader.corporate_actions import CorporateActionBook, split_shares
from trader.cycle import (
    CycleObserver,
    CycleReport,
    Tick,
    collect_if_due,
    last_closes,
    live_ticks,
    replay_ticks,
    session_start,
    steady_heap,
)
from trader.domain import ZERO, Account, Fill, OrderEvent, Position, Symbol, TradingState
from trader.errors import DomainError, PredictionError, TraderError
from trader.execution import ExecutionDesk
from trader.exits import ExitMonitor
from trader.history import MarketHistory, MarketSnapshot
from trader.predictions import PredictionBatch, PredictionClient
from trader.risk import RiskContext, RiskEngine
from trader.runner_commands import RunnerCommands, VenueAnswers
from trader.runner_events import record_events
from trader.sizing import size_orders
from trader.store import TraderStore

# Imported by other modules from here, wherever it is defined.
__all__ = ["CycleObserver", "CycleReport", "Runner", "Tick", "last_closes", "live_ticks", "replay_ticks", "session_start",
           "steady_heap"]

_log = logging.getLogger("alphaline.trader")
_DAY = dt.timedelta(days=1)
_MINUTE = dt.timedelta(minutes=1)
_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


def _newest(batch: PredictionBatch) -> dt.datetime:
    return max((p.feature_ts for p in batch.predictions), default=_NEVER)


class Runner(RunnerCommands):
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

        ``before_cycle`` runs first for each tick (a simulator advances its clock there); after each cycle
        (and ``on_report``) :meth:`idle` does the upkeep that would otherwise land inside a later cycle.
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
                self.idle()
        return reports

    def idle(self) -> None:
        """Upkeep between cycles, in the wait for the next bar: a WAL checkpoint once the log has grown
        (:meth:`~trader.store_wal.WalCheckpointer.checkpoint_if_grown`) and the garbage collector's full
        collection once it is nearly due (:func:`~trader.cycle.collect_if_due`), so that neither runs inside a cycle."""
        if self.store.wal is not None:
            self.store.wal.checkpoint_if_grown()
        collect_if_due()

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
        answers = VenueAnswers()
        try:
            if self.exits is not None:  # protective exits (trader/exits.py), before anything new is sized
                counts["submitted"] += self.exits.cycle(tick.ts, state, account)
            status = self._decide(tick, state, account, counts, answers)
        except ValueError as exc:  # data the checks cannot use (DomainError included): fail closed, say why
            status = f"no orders: {exc}"
        return self._finish(tick, self.store.trading_state().state, status, counts, account, value, problems, answers)

    def _decide(self, tick: Tick, state: TradingState, account: Account, counts: Counter[str], answers: VenueAnswers) -> str:
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
                value: Decimal | None, problems: tuple[str, ...], answers: VenueAnswers | None = None) -> CycleReport:
        """Record the venue's answers to the cycle's orders, the equity mark (when the book could be valued) and the
        cycle, in one commit that is not synced by itself (see the module docstring: nothing sent depends on it)."""
        report = CycleReport(ts=tick.ts, state=state, status=status, submitted=counts["submitted"], denied=counts["denied"],
                             canceled=counts["canceled"], fills=counts["fills"], behind=counts["behind"],
                             refused=bool(counts["refused"]), cash=account.cash, positions_value=value or ZERO,
                             equity=account.cash + (value or ZERO), problems=problems)
        answers = answers or VenueAnswers()
        with self.store.transaction(durable=False) as tx:
            # The orders are read again, not taken from _route: sending may have changed them (a bracket entry, trader/exits.py).
            new_fills = record_events(tx, answers.events, run_id=self.run_id, notes=answers.notes, ts=tick.ts)
            if value is not None:
                tx.record_equity(ts=tick.ts, equity=report.equity, cash=report.cash)
            tx.append_audit("cycle", report.to_record() | {"run_id": self.run_id}, ts=tick.ts)
        self._book(new_fills)
        self._last_ts = tick.ts
        return report

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
            new_fills = record_events(tx, events, run_id=self.run_id, notes=notes, ts=ts)
        return self._book(new_fills)

    def _book(self, new_fills: Sequence[Fill]) -> int:
        """Move the cash ledger and the fill totals by fills just committed (the ledger follows what is stored)."""
        for fill in new_fills:
            self._cash = self._require_cash() - fill.signed_qty * fill.price - fill.fee
            self._fill_qty[fill.symbol] = self._fill_qty.get(fill.symbol, ZERO) + fill.signed_qty
        return len(new_fills)

    # -- predictions ------------------------------------------------------------------------
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

