"""What every section of ``trader.yaml`` shares: the strict base model, the trading :class:`Mode` and the number types.

Every section derives from :class:`_Model`, so unknown keys are refused and a loaded config is frozen.
:data:`Fraction` is a share in (0, 1], :data:`Money` a positive amount, :data:`Ticker` a symbol as the
venues spell it.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Fraction = Annotated[Decimal, Field(gt=0, le=1)]
Money = Annotated[Decimal, Field(gt=0)]
Ticker = Annotated[str, Field(pattern=r"^[A-Z0-9.\-/]{1,15}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mode(StrEnum):
    SIM = "sim"
    PAPER = "paper"
    LIVE = "live"
    DRY_RUN = "dry-run"

