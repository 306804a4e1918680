"""How orders go out: execution algorithms, the simulated venue's costs, Alpaca's stream and the protective exits.

The ``execution:``, ``sim:``, ``streams:`` and ``exits:`` sections of ``trader.yaml``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, PositiveInt, model_validator

from trader.config_base import Fraction, _Model


class ExecutionConfig(_Model):
    """Execution algorithms (:mod:`trader.execution`): large orders go out as child slices over the next bars.

    ``algo: none`` sends every sized order whole (the default). With ``twap`` or ``vwap`` an order whose quantity
    exceeds ``participation_threshold`` of the symbol's expected volume over the next ``horizon_bars`` bars (from
    the warehouse's trailing bars) becomes a parent of ``slices`` children, one per cycle at most: ``twap`` in
    equal parts, ``vwap`` in proportion to the bar-of-day volume profile (short history: TWAP, with a note).
    """

    algo: Literal["none", "twap", "vwap"] = "none"
    #: Slice an order above this share of the expected volume over the horizon (no volume history: always slice).
    participation_threshold: Fraction = Decimal("0.01")
    #: Bars (decision cycles) a parent is spread over; a schedule never runs past the session's close.
    horizon_bars: Annotated[int, Field(ge=2, le=78)] = 4
    #: Children per parent (at most one per bar); ``null``: one per bar of the horizon.
    slices: Annotated[int, Field(ge=2, le=78)] | None = None
    #: Fewer children when a child would be worth less than this (one child left: the order goes whole).
    min_child_notional: Annotated[Decimal, Field(ge=0)] = Decimal(0)
    #: Calendar days of trailing bars for the volume profile and the expected volume.
    lookback_days: Annotated[int, Field(ge=1, le=365)] = 20
    #: Complete sessions the VWAP profile needs; fewer: the parent is sliced by TWAP (its record says why).
    min_profile_sessions: Annotated[int, Field(ge=1, le=250)] = 5

    @model_validator(mode="after")
    def _slices_fit(self) -> ExecutionConfig:
        if self.slices is not None and self.slices > self.horizon_bars:
            raise ValueError(f"slices ({self.slices}) cannot exceed horizon_bars ({self.horizon_bars}): one child per bar at most")
        return self

    @property
    def n_slices(self) -> int:
        return self.slices or self.horizon_bars


class SimVenueConfig(_Model):
    """The simulated venue of ``--mode sim`` (:class:`trader.brokers.sim.SimBroker`): what a fill costs there.

    The defaults are the research backtest's own costs (``models.backtest.Costs`` as the pipeline runs it: half
    spread 1 bp, commission 0.5 bp), so a sim session pays what its backtest assumed and ``trader track`` compares
    like with like. All zero gives the costless fills of a pure replay.
    """

    #: Each fill's price moved against the order by this many basis points (a limit still caps it).
    slippage_bps: Annotated[Decimal, Field(ge=0, le=1000)] = Decimal("1.0")
    #: Fee per fill in basis points of its notional.
    fee_bps: Annotated[Decimal, Field(ge=0, le=1000)] = Decimal("0.5")
    #: Fee per share (or unit) filled, on top of ``fee_bps``.
    fee_per_share: Annotated[Decimal, Field(ge=0)] = Decimal(0)
    #: A fill takes at most this share of the bar's volume (the rest fills on later bars); ``null``: no limit.
    max_participation: Fraction | None = Decimal("0.10")

    def record(self) -> dict[str, str | None]:
        """Exact text of each setting, as the sim store's session record keeps it (a resumed session must match)."""
        return {name: None if value is None else str(value) for name, value in self.model_dump().items()}


class StreamsConfig(_Model):
    """Alpaca's trade-update stream for ``paper``/``live`` (:mod:`trader.brokers.alpaca_stream`); off: REST polling only."""

    #: Fills and ends from the websocket as they happen; REST still backfills after every reconnect.
    trade_updates: bool = False
    #: With the stream on, fills and order statuses are also read over REST at least this often (seconds).
    rest_backfill_every_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    #: Paper/live, stream or not: a full reconciliation (orders, fills, positions) every this many cycles; 0: at start-up only.
    reconcile_every_cycles: Annotated[int, Field(ge=0)] = 0


class ExitPolicy(_Model):
    """Protective exits (:mod:`trader.exits`); every threshold ``null`` (the default) switches exits off.

    Percentages are fractions of the position's average entry price: a long bought at 100 with
    ``stop_loss_pct: 0.05`` is closed at 95, with ``take_profit_pct: 0.10`` at 110;
    ``trailing_stop_pct`` closes it 5 % below the best price seen since it opened;
    ``max_holding_bars`` closes it after that many bars. With ``use_venue_brackets`` the stop
    loss and take profit rest at the venue as an OCO pair (they survive the trader); otherwise,
    and for trailing and time stops always, the trader's own monitor checks them each cycle.
    """

    stop_loss_pct: Annotated[Decimal, Field(gt=0, lt=1)] | None = None
    take_profit_pct: Annotated[Decimal, Field(gt=0, le=10)] | None = None
    trailing_stop_pct: Annotated[Decimal, Field(gt=0, lt=1)] | None = None
    max_holding_bars: PositiveInt | None = None
    use_venue_brackets: bool = False
    #: The bar length the time stop counts in (one decision cycle per bar).
    timeframe: Literal["1m", "5m", "15m", "1h", "1d"] = "15m"

    @property
    def enabled(self) -> bool:
        return any(x is not None for x in (self.stop_loss_pct, self.take_profit_pct, self.trailing_stop_pct,
                                           self.max_holding_bars))

