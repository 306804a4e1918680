"""How the simulated venue fills and charges: :class:`SimConfig` (slippage, volume limit, starting cash) and its :class:`FeeModel`.

Example:
    >>> from decimal import Decimal as D
    >>> FeeModel(per_share=D("0.005"), bps=D(1)).fee(D(10), D(100))
    Decimal('0.150')
    >>> SimConfig(max_participation=D(2))
    Traceback (most recent call last):
    ...
    trader.errors.BrokerError: sim.max_participation: must be in (0, 1], got 2
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from trader.domain import ZERO, to_decimal
from trader.errors import BrokerError

BPS = Decimal(10_000)


@dataclass(frozen=True, kw_only=True)
class FeeModel:
    """Fee of one fill: ``per_share * qty + bps / 10_000 * qty * price``."""

    per_share: Decimal = ZERO
    bps: Decimal = ZERO

    def __post_init__(self) -> None:
        for name in ("per_share", "bps"):
            value = to_decimal(getattr(self, name), f"fees.{name}")
            if value < 0:
                raise BrokerError(f"fees.{name}: must be >= 0, got {value}")
            object.__setattr__(self, name, value)

    def fee(self, qty: Decimal, price: Decimal) -> Decimal:
        fee = qty * self.per_share
        if self.bps:  # skipped when zero only to keep the figure tidy (0.050, not 0.0500)
            fee += qty * price * self.bps / BPS
        return fee


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """How the simulated venue fills. ``max_participation=None`` lifts the volume limit."""

    slippage_bps: Decimal = ZERO
    fees: FeeModel = field(default_factory=FeeModel)
    max_participation: Decimal | None = Decimal("0.10")
    lot_size: Decimal = Decimal(1)
    initial_cash: Decimal = Decimal(100_000)
    account: str = "sim"
    venue: str = "sim"

    def __post_init__(self) -> None:
        for name in ("slippage_bps", "lot_size", "initial_cash"):
            object.__setattr__(self, name, to_decimal(getattr(self, name), f"sim.{name}"))
        if self.slippage_bps < 0 or self.lot_size <= 0:
            raise BrokerError("sim: slippage_bps must be >= 0 and lot_size > 0")
        if self.max_participation is not None:
            object.__setattr__(self, "max_participation", to_decimal(self.max_participation, "sim.max_participation"))
            if not 0 < self.max_participation <= 1:
                raise BrokerError(f"sim.max_participation: must be in (0, 1], got {self.max_participation}")
