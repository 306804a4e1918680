"""Typed configuration: ``trader.yaml`` (risk limits, universe, sizing, prediction service, mode) and secrets.

Everything in the file is validated at start-up and unknown keys are refused, so a typo
(``max_postion_pct``) fails loudly instead of silently keeping a default. Errors are one
line naming the file, the field and the reason (:class:`~trader.errors.TraderConfigError`).
Secrets never live in the file: :class:`Secrets` reads ``ALPACA_API_KEY``,
``ALPACA_SECRET_KEY`` and ``TRADER_API_TOKEN`` from the environment and keeps them as
``SecretStr`` (shown as ``**********`` in any repr or log line).

A minimal ``trader.yaml``::

    mode: sim
    universe:
      symbols: [AAA, BBB, CCC]
      sectors: {tech: [AAA, BBB], energy: [CCC]}
    risk:
      max_position_pct: 0.10
      drawdown: {tiers: [{at: 0.05, size_multiplier: 0.75}, {at: 0.10, size_multiplier: 0.5}],
                 flatten_and_halt_at: 0.15}
    sizing: {mode: long_short, k: 1}

Example:
    >>> cfg = TraderConfig.model_validate({"universe": {"symbols": ["AAA"], "sectors": {"tech": ["AAA"]}}})
    >>> cfg.mode, cfg.risk.max_position_pct, cfg.universe.sector_of("AAA")
    (<Mode.SIM: 'sim'>, Decimal('0.10'), 'tech')
    >>> Secrets.from_env({"ALPACA_API_KEY": "PKTEST123", "ALPACA_SECRET_KEY": "s3cr3t-value"}).alpaca_secret_key
    SecretStr('**********')
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt, SecretStr, ValidationError, model_validator

from trader.errors import TraderConfigError

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


class DrawdownTier(_Model):
    """From a drawdown of ``at`` (fraction of the equity peak) on, new risk is sized by ``size_multiplier``."""

    at: Annotated[Decimal, Field(gt=0, lt=1)]
    size_multiplier: Fraction


class DrawdownConfig(_Model):
    """Drawdown tiers; at ``flatten_and_halt_at`` the trader flattens and halts (the size multiplier is 0)."""

    tiers: tuple[DrawdownTier, ...] = (
        DrawdownTier(at=Decimal("0.05"), size_multiplier=Decimal("0.75")),
        DrawdownTier(at=Decimal("0.10"), size_multiplier=Decimal("0.5")),
    )
    flatten_and_halt_at: Annotated[Decimal, Field(gt=0, lt=1)] = Decimal("0.15")

    @model_validator(mode="after")
    def _ordered(self) -> DrawdownConfig:
        ats = [t.at for t in self.tiers]
        if ats != sorted(set(ats)):
            raise ValueError("tiers must have strictly increasing 'at'")
        mults = [t.size_multiplier for t in self.tiers]
        if mults != sorted(mults, reverse=True):
            raise ValueError("a deeper tier cannot have a larger size_multiplier")
        if ats and ats[-1] >= self.flatten_and_halt_at:
            raise ValueError("every tier must start below flatten_and_halt_at")
        return self

    def size_multiplier(self, drawdown: Decimal) -> Decimal:
        """1 above the first tier, the deepest reached tier's multiplier, 0 from ``flatten_and_halt_at`` on."""
        if drawdown >= self.flatten_and_halt_at:
            return Decimal(0)
        reached = [t.size_multiplier for t in self.tiers if drawdown >= t.at]
        return reached[-1] if reached else Decimal(1)


class RiskLimits(_Model):
    """Limits of :class:`trader.risk.RiskEngine`. Percentages are fractions of equity (0.10 = 10 %)."""

    max_notional_per_order: Money = Decimal(50_000)
    max_position_pct: Fraction = Decimal("0.10")
    max_gross_exposure_pct: Annotated[Decimal, Field(gt=0, le=10)] = Decimal("1.0")
    max_net_exposure_pct: Annotated[Decimal, Field(ge=0, le=10)] = Decimal("0.5")
    #: ``None`` switches the sector check off; otherwise every traded symbol needs a sector.
    max_sector_pct: Fraction | None = Decimal("0.30")
    daily_loss_limit_pct: Annotated[Decimal, Field(gt=0, lt=1)] = Decimal("0.03")
    drawdown: DrawdownConfig = DrawdownConfig()
    price_collar_pct: Fraction = Decimal("0.05")
    max_orders_per_minute: PositiveInt = 60
    #: Seconds (``1800``) or ISO 8601 (``PT30M``); older features make a prediction stale.
    max_prediction_age: dt.timedelta = dt.timedelta(minutes=30)
    market_hours_only: bool = True
    restricted_symbols: frozenset[Ticker] = frozenset()
    # -- portfolio risk (:mod:`trader.risk.portfolio`), on the trailing bars of ``history``; ``None`` switches a check off
    #: Value at risk / expected shortfall of the book after the order, as a fraction of equity.
    max_var_pct: Fraction | None = None
    max_cvar_pct: Fraction | None = None
    #: ``historical`` (empirical quantile of past bar P&L), ``parametric`` (Gaussian, sample covariance) or
    #: ``worst`` (the larger of the two).
    var_method: Literal["historical", "parametric", "worst"] = "historical"
    var_confidence: Annotated[Decimal, Field(ge=Decimal("0.8"), lt=1)] = Decimal("0.99")
    #: Horizon in bars; one-bar figures are scaled by sqrt(horizon) (26 bars of 15 minutes = one session).
    var_horizon_bars: PositiveInt = 26
    #: An order's quantity may be at most this fraction of the symbol's average daily volume.
    max_adv_pct: Fraction | None = None
    #: Gross exposure of the positions moving with the order's symbol (signed correlation ≥ the threshold,
    #: the symbol itself included), as a fraction of equity.
    max_correlated_pct: Annotated[Decimal, Field(gt=0, le=10)] | None = None
    correlation_threshold: Annotated[Decimal, Field(gt=0, lt=1)] = Decimal("0.7")

    def needs_history(self) -> bool:
        return any(x is not None for x in (self.max_var_pct, self.max_cvar_pct, self.max_adv_pct, self.max_correlated_pct))


class SizingConfig(_Model):
    """How scores become orders (:mod:`trader.sizing`)."""

    mode: Literal["long_short", "long_only"] = "long_short"
    #: Names per side: the top ``k`` scores go long, the bottom ``k`` short (long-short only).
    k: PositiveInt = 5
    #: Target sum of |weights| before the drawdown size multiplier.
    gross_exposure: Annotated[Decimal, Field(gt=0, le=10)] = Decimal(1)
    weighting: Literal["equal", "kelly"] = "equal"
    #: Kelly from the prediction's confidence p and payoff ratio b: f = fraction · (p − (1 − p) / b), capped.
    kelly_fraction: Fraction = Decimal("0.25")
    kelly_cap: Fraction = Decimal("0.10")
    kelly_payoff: Money = Decimal(1)
    #: Volatility targeting: weights scale by target_vol / vol (same units as the vol estimates given).
    target_vol: Money | None = None
    max_weight: Fraction = Decimal("0.10")
    fractional: bool = False
    qty_decimals: Annotated[int, Field(ge=0, le=9)] = 4
    min_order_notional: Annotated[Decimal, Field(ge=0)] = Decimal(1)
    #: No order when |target weight − current weight| is below this (full closes excepted).
    rebalance_threshold: Annotated[Decimal, Field(ge=0, lt=1)] = Decimal("0.005")
    #: Only buy a long-direction prediction and only short a short-direction one; never trade "flat".
    respect_direction: bool = True
    #: Portfolio construction (:mod:`trader.optimizer`, skfolio) over the selected names: ``none`` keeps the
    #: ``weighting`` above; ``mvo`` maximises mean − risk_aversion · variance with the scores as expected returns and a
    #: Ledoit-Wolf covariance; ``hrp`` is hierarchical risk parity on the same covariance. Both use ``history``.
    optimizer: Literal["none", "mvo", "hrp"] = "none"
    #: mvo: the weight of variance against expected return.
    risk_aversion: Annotated[float, Field(gt=0, le=1e6)] = 1.0
    #: mvo: the bars ahead the scores forecast (the model's label horizon); they are divided by it to match
    #: the one-bar covariance.
    score_horizon_bars: PositiveInt = 4
    #: Largest Σ|target weight − current weight| per rebalance; a larger move goes part of the way. ``None``: no cap.
    max_turnover: Annotated[Decimal, Field(gt=0, le=20)] | None = None
    #: Largest |Σ weights| (long minus short) of the targets; the heavier side is scaled down. ``None``: no cap.
    max_net_weight: Annotated[Decimal, Field(ge=0, le=10)] | None = None

    @property
    def lot_size(self) -> Decimal:
        """The smallest quantity step: ``10^-qty_decimals`` when ``fractional`` (0.0001 BTC at 4), else one share."""
        return Decimal(1).scaleb(-self.qty_decimals) if self.fractional else Decimal(1)


class UniverseConfig(_Model):
    symbols: Annotated[tuple[Ticker, ...], Field(min_length=1)]
    sectors: dict[str, tuple[Ticker, ...]] = {}

    @model_validator(mode="after")
    def _sectors_in_universe(self) -> UniverseConfig:
        seen: dict[str, str] = {}
        for sector, members in self.sectors.items():
            for symbol in members:
                if symbol not in self.symbols:
                    raise ValueError(f"sector {sector!r} lists {symbol}, which is not in symbols")
                if symbol in seen:
                    raise ValueError(f"{symbol} is in two sectors ({seen[symbol]!r}, {sector!r})")
                seen[symbol] = sector
        return self

    def sector_map(self) -> dict[str, str]:
        return {s: sector for sector, members in self.sectors.items() for s in members}

    def sector_of(self, symbol: str) -> str | None:
        return self.sector_map().get(symbol)


class PredictionConfig(_Model):
    url: Annotated[str, Field(pattern=r"^https?://")] = "http://127.0.0.1:3001"
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 5.0
    #: Consecutive failed cycles after which the trading state goes to HALTED.
    max_consecutive_failures: PositiveInt = 3
    #: Ask for each score's top N SHAP contributions, recorded with every order decision (``trader explain``); 0: off.
    explain: Annotated[int, Field(ge=0, le=100)] = 5
    #: Decide only on the bar that has just closed: a prediction whose ``feature_ts`` is older than that bar's close is
    #: held like a stale one, and a cycle with none current is refused (audited and counted).
    require_current_bar: bool = True
    #: Live (paper, live, dry-run): how long a cycle waits for the just-closed bar's features to reach the online store
    #: (the intraday features job lands them a minute or so after the boundary), asking again every ``feature_poll_s``.
    feature_wait: dt.timedelta = dt.timedelta(minutes=4)
    feature_poll_s: Annotated[float, Field(gt=0, le=300)] = 5.0


def _alert_url(url: str) -> str:
    from trader.alerts import check_url  # imports apprise only when a URL is configured

    return check_url(url)


class AlertsConfig(_Model):
    """Notifications (:mod:`trader.alerts`): apprise URLs, and when repeated denials are worth one.

    URLs that carry a token belong in ``ALPHALINE_ALERT_URLS`` (the environment), which adds to these.
    """

    urls: tuple[Annotated[str, AfterValidator(_alert_url)], ...] = ()
    #: Cycles in a row with at least one denied order before one alert (once per streak).
    denied_cycles: PositiveInt = 3


class MetricsConfig(_Model):
    """Prometheus metrics of ``trader run`` (:mod:`trader.metrics`); ``port: null`` serves none."""

    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    host: str = "127.0.0.1"


class HistoryConfig(_Model):
    """Trailing bars from the warehouse for the optimiser and the portfolio risk checks (:mod:`trader.portfolio`).

    Only bars closed by the decision time are read (point-in-time).
    """

    #: Calendar days of bars before the decision time.
    lookback_days: Annotated[int, Field(ge=1, le=3650)] = 30
    #: Fewer bar returns than this: the optimiser falls back to ``sizing.weighting``, the risk checks deny.
    min_observations: Annotated[int, Field(ge=10)] = 60


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


class TraderConfig(_Model):
    mode: Mode = Mode.SIM
    universe: UniverseConfig
    risk: RiskLimits = RiskLimits()
    sizing: SizingConfig = SizingConfig()
    prediction: PredictionConfig = PredictionConfig()
    alerts: AlertsConfig = AlertsConfig()
    metrics: MetricsConfig = MetricsConfig()
    history: HistoryConfig = HistoryConfig()
    execution: ExecutionConfig = ExecutionConfig()
    streams: StreamsConfig = StreamsConfig()
    exits: ExitPolicy = ExitPolicy()
    sim: SimVenueConfig = SimVenueConfig()
    #: Any SQLAlchemy URL; default ``sqlite:///$ALPHALINE_HOME/trader/trader.db``.
    store_url: str | None = None

    @model_validator(mode="after")
    def _sectors_cover_universe(self) -> TraderConfig:
        if self.risk.max_sector_pct is not None and self.universe.sectors:
            missing = sorted(set(self.universe.symbols) - set(self.universe.sector_map()))
            if missing:
                raise ValueError(f"risk.max_sector_pct is set but {', '.join(missing)} have no sector")
        return self


def load_config(path: str | Path) -> TraderConfig:
    """Read and validate ``trader.yaml``; every problem is one :class:`TraderConfigError` line.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "trader.yaml"
        >>> _ = p.write_text("universe: {symbols: [AAA]}\\nrisk: {max_postion_pct: 0.1}\\n")
        >>> load_config(p)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        trader.errors.TraderConfigError: ...trader.yaml: risk.max_postion_pct: Extra inputs are not permitted
    """
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TraderConfigError(source, "", f"cannot read the file ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise TraderConfigError(source, where, f"not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TraderConfigError(source, "", f"the top level must be a mapping, got {type(data).__name__}")
    try:
        return TraderConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(part) for part in err["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise TraderConfigError(source, field, err["msg"].removeprefix("Value error, ") + more) from None


_PLACEHOLDERS = {"changeme", "change-me", "changethis", "secret", "xxx", "your-key", "your_key", "todo", "placeholder"}


def _secret(env: Mapping[str, str], name: str) -> SecretStr | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    if value.lower() in _PLACEHOLDERS or value.startswith("<"):
        raise TraderConfigError("environment", name, "looks like a placeholder, not a real secret")
    return SecretStr(value)


class Secrets(_Model):
    """Secrets from the environment only; never in ``trader.yaml``, never in a repr or log line."""

    alpaca_api_key: SecretStr | None = None
    alpaca_secret_key: SecretStr | None = None
    api_token: SecretStr | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Secrets:
        """Read ``ALPACA_API_KEY``, ``ALPACA_SECRET_KEY`` and ``TRADER_API_TOKEN`` (placeholders refused)."""
        env = os.environ if env is None else env
        return cls(alpaca_api_key=_secret(env, "ALPACA_API_KEY"), alpaca_secret_key=_secret(env, "ALPACA_SECRET_KEY"),
                   api_token=_secret(env, "TRADER_API_TOKEN"))

    def require_alpaca(self, mode: Mode) -> tuple[SecretStr, SecretStr]:
        """Both Alpaca keys, or a :class:`TraderConfigError` naming the missing one for ``mode``."""
        for name, value in (("ALPACA_API_KEY", self.alpaca_api_key), ("ALPACA_SECRET_KEY", self.alpaca_secret_key)):
            if value is None:
                raise TraderConfigError("environment", name, f"not set; --mode {mode.value} needs Alpaca keys")
        assert self.alpaca_api_key is not None and self.alpaca_secret_key is not None
        return self.alpaca_api_key, self.alpaca_secret_key
