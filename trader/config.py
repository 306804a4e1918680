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

Where the sections live (this module re-exports them, so ``from trader.config import ...`` keeps working):
:mod:`trader.config_base` (:class:`Mode`, the strict base model, ``Fraction``/``Money``/``Ticker``),
:mod:`trader.config_risk` (:class:`RiskLimits`, :class:`DrawdownConfig`, :class:`SizingConfig`),
:mod:`trader.config_execution` (:class:`ExecutionConfig`, :class:`SimVenueConfig`, :class:`StreamsConfig`,
:class:`ExitPolicy`) and :mod:`trader.config_secrets` (:class:`Secrets`). Here: the universe, the prediction
service, alerts, metrics, history, the whole :class:`TraderConfig` and :func:`load_config`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import AfterValidator, Field, PositiveInt, ValidationError, model_validator

from trader.config_base import Fraction, Mode, Money, Ticker, _Model
from trader.config_execution import ExecutionConfig, ExitPolicy, SimVenueConfig, StreamsConfig
from trader.config_risk import DrawdownConfig, DrawdownTier, RiskLimits, SizingConfig
from trader.config_secrets import Secrets
from trader.errors import TraderConfigError

__all__ = [
    "AlertsConfig", "DrawdownConfig", "DrawdownTier", "ExecutionConfig", "ExitPolicy", "Fraction", "HistoryConfig",
    "MetricsConfig", "Mode", "Money", "PredictionConfig", "RiskLimits", "Secrets", "SimVenueConfig", "SizingConfig",
    "StreamsConfig", "Ticker", "TraderConfig", "UniverseConfig", "load_config",
]


class UniverseConfig(_Model):
    symbols: Annotated[tuple[Ticker, ...], Field(min_length=1)]
    sectors: dict[str, tuple[Ticker, ...]] = {}  # noqa: RUF012 (pydantic copies a default; ruff cannot see _Model is pydantic)

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
