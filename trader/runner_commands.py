"""The commands a decision cycle sends to the venue: :class:`RunnerCommands`, a part of :class:`trader.runner.Runner`.

Approved orders are routed after the risk checks: the decisions and the orders (NEW) commit together,
synced to disk, before any order leaves; the kill switch is re-read before each send, and a lost
answer is looked up by ``client_order_id``, never resent blindly. The venue's answers are collected in
:class:`VenueAnswers`, which the cycle record's commit writes. HALTED cancels the working orders that
add risk; flatten-and-halt cancels everything and closes every position.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trader.brokers.base import Broker
from trader.domain import CancelOrder, Order, OrderAccepted, OrderEvent, OrderRejected, SubmitOrder, TradingState
from trader.errors import BrokerError, BrokerRateLimitError, BrokerUnavailableError
from trader.execution import lineage
from trader.predictions import PredictionBatch
from trader.risk import RiskContext, RiskDecision, RiskEngine
from trader.store import TraderStore

if TYPE_CHECKING:
    from trader.cycle import Tick
    from trader.exits import ExitMonitor

_BY = "runner"


@dataclass
class VenueAnswers:
    """The venue's answers to a cycle's orders, recorded with the cycle record (one commit)."""

    events: list[OrderEvent] = field(default_factory=list)
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class RunnerCommands:
    """Orders, cancels and flatten-and-halt, sent on behalf of :class:`trader.runner.Runner` (which sets the attributes below)."""

    store: TraderStore
    broker: Broker
    engine: RiskEngine
    exits: ExitMonitor | None
    run_id: str
    _cancel_sent: set[str]
    _denials: Counter[str]

    # The runner's own audit records and HALT: the cycle uses them too.
    def _audit(self, kind: str, ts: dt.datetime, payload: dict[str, Any]) -> None:
        self.store.append_audit(kind, payload | {"run_id": self.run_id}, ts=ts)

    def _halt(self, now: dt.datetime, reason: str) -> TradingState:
        self.store.set_trading_state(TradingState.HALTED, reason=reason, changed_by=_BY, at=now)
        return TradingState.HALTED

    def _route(self, decisions: list[RiskDecision], batch: PredictionBatch, tick: Tick, state: TradingState,
               counts: Counter[str], answers: VenueAnswers) -> None:
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
                tx.append_audit("risk_decision", decision.to_record(with_prediction=True) | {"run_id": self.run_id}, ts=now)
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

    def _batch_record(self, batch: PredictionBatch, tick: Tick) -> dict[str, Any]:
        return {"model_version": batch.model_version, "as_of": tick.as_of, "count": len(batch.predictions),
                "predictions": [{k: v for k, v in p.to_record().items() if k not in ("model_version", "explanation")}
                                for p in batch.predictions]}  # explanations go with each order's decision
