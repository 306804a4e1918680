"""Pre-trade risk: :class:`RiskEngine` approves or denies every order with a reason code per check.

* :mod:`trader.risk.context` — :class:`RiskReason`, :class:`RiskCheckResult`, :class:`RiskContext`
  (the snapshot the checks read);
* :mod:`trader.risk.checks` — the checks themselves, one short function each;
* :mod:`trader.risk.portfolio` — the checks on the whole book after the order (VaR/CVaR, liquidity,
  correlation concentration) on trailing bar returns, and :mod:`trader.risk.stress` — stress
  scenarios as a report (``trader risk``);
* :mod:`trader.risk.engine` — :class:`RiskEngine`, :class:`RiskDecision`, :class:`PortfolioRisk`.

The engine never calls a broker and never reads the clock: ``now`` comes in the context.
"""

from trader.risk.checks import DEFAULT_CHECKS, Check
from trader.risk.context import RiskCheckResult, RiskContext, RiskReason
from trader.risk.engine import PortfolioRisk, RiskDecision, RiskEngine

__all__ = [
    "DEFAULT_CHECKS",
    "Check",
    "PortfolioRisk",
    "RiskCheckResult",
    "RiskContext",
    "RiskDecision",
    "RiskEngine",
    "RiskReason",
]
