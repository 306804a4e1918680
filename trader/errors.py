"""Errors of the trader, each with a one-line message that names the input, the field and the reason.

Hierarchy::

    TraderError
     ├── TraderConfigError          trader.yaml or an environment variable is invalid (file, field, reason)
     ├── DomainError (ValueError)   a value the domain cannot hold: float money, naive time, bad symbol
     │    └── IllegalTransitionError   an order event not allowed from the order's current status
     ├── PredictionError            the prediction service is down or answered something unusable
     ├── StoreError                 the state store cannot do what was asked
     │    └── AuditConflictError       another writer appended to the audit chain first (retry)
     ├── BrokerError                a broker adapter failed (raised by ``trader.brokers``)
     │    ├── BrokerRejectedError      the venue refused a request outright (order rejections
     │    │                            come back as OrderRejected events instead)
     │    ├── BrokerRateLimitError     the venue asked us to back off (429)
     │    └── BrokerUnavailableError   timeout / 5xx: the order's fate is unknown, look it up
     │                                 by client_order_id before any resubmission
     └── ReconciliationError        local and broker state differ in a way that blocks trading

Risk denials are not exceptions: the risk engine returns a decision with a reason code
(:class:`trader.risk.RiskReason`). Bugs are not wrapped: they raise their own exception.
"""

from __future__ import annotations


class TraderError(Exception):
    """Base of every trader error; ``str(err)`` is the one-line message."""


class TraderConfigError(TraderError):
    """``trader.yaml`` or an environment variable is invalid.

    Args:
        source: the file (or ``"environment"``).
        field: dotted path of the offending field, e.g. ``risk.max_position_pct``.
        reason: why, in a few words.
    """

    def __init__(self, source: str, field: str, reason: str):
        self.source, self.field, self.reason = source, field, reason
        where = f"{source}: {field}: " if field else f"{source}: "
        super().__init__(where + reason)


class DomainError(TraderError, ValueError):
    """A value the trading domain cannot hold (float money, naive datetime, bad symbol, overfill)."""


class IllegalTransitionError(DomainError):
    """An order event is not allowed from the order's current status (see ``trader.domain.TRANSITIONS``)."""

    def __init__(self, client_order_id: str, current: str, target: str, event: str):
        self.client_order_id, self.current, self.target, self.event = client_order_id, current, target, event
        super().__init__(f"order {client_order_id}: {event} would move it {current} → {target}, which is not allowed")


class PredictionError(TraderError):
    """The prediction service is unreachable or answered something that breaks the §3.4 contract."""


class StoreError(TraderError):
    """The state store cannot do what was asked (unreachable database, corrupt row)."""


class AuditConflictError(StoreError):
    """Another writer appended to the audit chain between reading its head and writing; retry the transaction."""


class BrokerError(TraderError):
    """A broker adapter failed; subclasses say whether a retry can help."""


class BrokerRejectedError(BrokerError):
    """The venue refused a request outright (bad credentials, unknown order to cancel).

    An order the venue declines (buying power, invalid qty, not fractionable) is not an
    exception: :meth:`trader.brokers.base.Broker.submit` returns an ``OrderRejected`` event.
    """


class BrokerRateLimitError(BrokerError):
    """The venue asked us to slow down (HTTP 429)."""


class BrokerUnavailableError(BrokerError):
    """Timeout or server error: the order may or may not exist; look it up by ``client_order_id`` first."""


class ReconciliationError(TraderError):
    """Local orders/positions and the broker's differ in a way that must be resolved before trading."""
