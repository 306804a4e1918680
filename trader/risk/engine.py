"""The risk engine: every order passes it; it approves or denies, never calls a broker."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from trader.config import RiskLimits, TraderConfig
from trader.domain import CancelOrder, SubmitOrder
from trader.market_hours import TradingCalendar, active_profile
from trader.risk.checks import DEFAULT_CHECKS, Check
from trader.risk.context import OrderView, RiskCheckResult, RiskContext, RiskReason
from trader.risk.record import compact_checks, compact_prediction

Command = SubmitOrder | CancelOrder


@dataclass(frozen=True)
class RiskDecision:
    """Every check's result for one command; approved only if all approved."""

    command: Command
    results: tuple[RiskCheckResult, ...]

    @cached_property  # read several times per decision (routing, counts, the record)
    def approved(self) -> bool:
        return bool(self.results) and all(r.approved for r in self.results)

    @property
    def denials(self) -> tuple[RiskCheckResult, ...]:
        return tuple(r for r in self.results if not r.approved)

    @property
    def reason(self) -> RiskReason:
        """The first denial's reason code, or ``APPROVED``."""
        denials = self.denials
        return denials[0].reason if denials else RiskReason.APPROVED

    def summary(self) -> str:
        """One line for a log: ``APPROVED buy 10 AAA`` or ``DENIED buy 10 AAA: TRADING_HALTED (...)``."""
        what = _describe(self.command)
        if self.approved:
            return f"APPROVED {what}"
        return f"DENIED {what}: " + "; ".join(f"{r.reason.value} ({r.message})" for r in self.denials)

    def to_record(self, *, with_prediction: bool = False) -> dict[str, Any]:
        """The audit payload (compact, :mod:`trader.risk.record`): the command and every check's verdict, in order.

        ``with_prediction``: a submit's prediction too (``None`` without one), less what the head repeats.
        """
        cmd = self.command
        head: dict[str, Any] = {"command": type(cmd).__name__, "approved": self.approved, "reason": self.reason.value}
        if isinstance(cmd, SubmitOrder):
            o = cmd.order
            head |= {"client_order_id": o.client_order_id, "symbol": o.symbol, "side": o.side.value, "qty": o.qty,
                     "order_type": o.order_type.value, "limit_price": o.limit_price, "reference_price": cmd.reference_price,
                     **({"stop_price": o.stop_price, "exit_reason": cmd.exit_reason} if cmd.exit_reason or o.stop_price else {}),
                     "model_version": cmd.prediction.model_version if cmd.prediction else None,
                     "feature_ts": cmd.prediction.feature_ts if cmd.prediction else None}
        else:
            head |= {"client_order_id": cmd.client_order_id, "symbol": cmd.symbol, "cancel_reason": cmd.reason}
        if with_prediction:
            prediction = cmd.prediction if isinstance(cmd, SubmitOrder) else None
            head["prediction"] = compact_prediction(prediction, head["symbol"]) if prediction else None
        head["checks"] = compact_checks(self.results)
        return head


def _describe(cmd: Command) -> str:
    if isinstance(cmd, SubmitOrder):
        return f"{cmd.order.side} {cmd.order.qty} {cmd.order.symbol} ({cmd.order.client_order_id})"
    return f"cancel {cmd.client_order_id} ({cmd.symbol})"


@dataclass(frozen=True)
class PortfolioRisk:
    """The book-level numbers the run loop acts on once per cycle.

    ``size_multiplier`` scales new targets (drawdown tiers); ``flatten_and_halt`` means cancel
    everything, close every position and set the trading state to HALTED.
    """

    equity: Decimal
    drawdown: Decimal
    daily_return: Decimal
    size_multiplier: Decimal
    flatten_and_halt: bool
    daily_loss_breached: bool


class RiskEngine:
    """Approves or denies commands against :class:`~trader.config.RiskLimits`, with a reason code per check.

    Cancels are always approved (they only take risk off). A submit runs every check, even
    after a denial, so that the audit trail shows the whole picture; any exception inside
    a check denies with ``RISK_CHECK_ERROR`` (fail closed).

    Example:
        >>> import datetime as dt
        >>> from decimal import Decimal as D
        >>> from trader.domain import Account, ClientOrderId, Order, Side, Symbol, TradingState
        >>> now = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
        >>> ctx = RiskContext(now=now, trading_state=TradingState.HALTED, account=Account(cash=D(100_000)),
        ...                   prices={Symbol("AAA"): D(100)}, day_start_equity=D(100_000), peak_equity=D(100_000))
        >>> order = Order(client_order_id=ClientOrderId("al-1"), symbol=Symbol("AAA"), side=Side.BUY, qty=D(10), created_at=now)
        >>> decision = RiskEngine(RiskLimits(), sectors={"AAA": "tech"}).check(SubmitOrder(order=order), ctx)
        >>> decision.approved, decision.reason
        (False, <RiskReason.TRADING_HALTED: 'TRADING_HALTED'>)
    """

    def __init__(self, limits: RiskLimits, *, sectors: Mapping[str, str] | None = None,
                 calendar: TradingCalendar | None = None, checks: Sequence[tuple[str, Check]] = DEFAULT_CHECKS):
        self.limits = limits
        self.sectors = dict(sectors or {})
        self.calendar = calendar or active_profile().market_calendar()
        self.checks = tuple(checks)

    @classmethod
    def from_config(cls, config: TraderConfig, *, calendar: TradingCalendar | None = None) -> RiskEngine:
        return cls(config.risk, sectors=config.universe.sector_map(), calendar=calendar)

    def check(self, command: Command, ctx: RiskContext) -> RiskDecision:
        """Run every check on ``command`` against ``ctx``."""
        if isinstance(command, CancelOrder):
            ok = RiskCheckResult("cancel", True, RiskReason.APPROVED, "cancels are always allowed, whatever the trading state")
            return RiskDecision(command, (ok,))
        if not isinstance(command, SubmitOrder):
            raise TypeError(f"not a command: {command!r}")
        view = OrderView(command, ctx, self.limits, self.sectors, self.calendar)
        return RiskDecision(command, tuple(self._run(name, check, view) for name, check in self.checks))

    def check_all(self, commands: Iterable[Command], ctx: RiskContext) -> tuple[list[RiskDecision], RiskContext]:
        """Check commands in order; each approved submit counts as working for the ones after it.

        Returns the decisions and the context with the approved orders added (so a cycle's
        orders cannot together breach a limit each one respects alone).
        """
        decisions = []
        for command in commands:
            decision = self.check(command, ctx)
            decisions.append(decision)
            if decision.approved and isinstance(command, SubmitOrder):
                ctx = ctx.with_submitted(command.order)
        return decisions, ctx

    def portfolio_status(self, ctx: RiskContext) -> PortfolioRisk:
        """Drawdown, today's return and what they imply (raises if the book cannot be valued: do not trade)."""
        equity = ctx.equity
        if ctx.peak_equity <= 0 or ctx.day_start_equity <= 0:
            raise ValueError(f"peak_equity {ctx.peak_equity} and day_start_equity {ctx.day_start_equity} must be > 0")
        drawdown = max((ctx.peak_equity - equity) / ctx.peak_equity, Decimal(0))
        daily = (equity - ctx.day_start_equity) / ctx.day_start_equity
        multiplier = self.limits.drawdown.size_multiplier(drawdown)
        return PortfolioRisk(equity=equity, drawdown=drawdown, daily_return=daily, size_multiplier=multiplier,
                             flatten_and_halt=drawdown >= self.limits.drawdown.flatten_and_halt_at,
                             daily_loss_breached=-daily >= self.limits.daily_loss_limit_pct)

    @staticmethod
    def _run(name: str, check: Check, view: OrderView) -> RiskCheckResult:
        try:
            reason, message = check(view)
        except Exception as exc:  # fail closed: a check that cannot decide denies
            return RiskCheckResult(name, False, RiskReason.RISK_CHECK_ERROR, f"{type(exc).__name__}: {exc}")
        return RiskCheckResult(name, reason is RiskReason.APPROVED, reason, message)
