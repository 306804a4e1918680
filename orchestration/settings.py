"""Typed settings and the one place where ``ALPHALINE_HOME`` becomes paths.

Every stateful file lives under ``ALPHALINE_HOME`` (default ``.alphaline/`` in the
current directory), laid out as DESIGN.md §2 describes.

Example:
    >>> from orchestration.settings import Settings
    >>> Settings(home="/tmp/x").warehouse_path.name
    'warehouse.duckdb'
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from trader.market_hours import MarketProfile

# Tools in the stack that report usage over the network unless told not to.
_TELEMETRY_OFF = {
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "FEAST_USAGE": "False",
    "BENTOML_DO_NOT_TRACK": "true",
}

_DAGSTER_YAML = """\
# Written by alphaline: local run storage under ALPHALINE_HOME, no telemetry.
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 1
"""


#: The demo's pinned as-of session. ``alphaline demo`` and ``alphaline ingest --synthetic`` end here unless the
#: user names another day (``--as-of``/``--end``, or ``today``), so the same commit builds the same experiment —
#: bars, metrics, orders, equity — on any day and any machine. Move it deliberately, in its own commit.
DEMO_AS_OF = dt.date(2026, 11, 25)


class Settings(BaseSettings):
    """Process-wide settings, read from ``ALPHALINE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ALPHALINE_", extra="forbid", frozen=True)

    home: Path = Field(default=Path(".alphaline"), description="Root of all state.")
    deployment: Literal["local", "prod"] = "local"
    market: Literal["equities", "crypto"] = Field(
        default="equities", description="equities: XNYS sessions (New York days); crypto: 24/7, every UTC day a session.")
    eod_cutoff: str = Field(default="", description="crypto: where a trading day ends (HH:MM UTC; empty: midnight UTC).")
    market_start: dt.date = Field(
        default=dt.date(2024, 1, 2),
        description="Origin of the synthetic market: the first day any bar can exist.",
    )
    partitions_start: dt.date | None = Field(
        default=None,
        description="First day of the daily (weekday) partitions; default: the first session ingested into this home "
        "(recorded by `alphaline demo`/`ingest`), else market_start.",
    )
    max_reject_share: float = Field(default=0.01, ge=0.0, le=1.0)
    alpaca_symbols: str = Field(default="", description="Comma-separated symbols for the prod (Alpaca) deployment.")
    feature_timeframe: str = Field(default="15m", description="Timeframe of the bars the features are computed on.")
    trader_mode: Literal["live", "paper", "sim", "dry-run"] = Field(
        default="live", description="Whose store the trader assets read: the trader keeps one per mode (the demo trades in sim)."
    )
    feast_config: Literal["local", "prod"] = Field(
        default="local", description="feature_repo/feature_store.yaml (SQLite online) or feature_store.prod.yaml (Redis, SQL registry)."
    )
    postgres_url: SecretStr = Field(
        default=SecretStr(""), description="Servers profile (with redis_url): Dagster's storage, Feast's registry and the "
        "trader's stores each in a database on this PostgreSQL server (orchestration/deployment.py); secret: never shown.",
    )
    redis_url: SecretStr = Field(default=SecretStr(""), description="Servers profile: Feast's online store (redis://host:port/db).")
    alert_urls: SecretStr = Field(
        default=SecretStr(""),
        description="apprise URLs (Slack, e-mail, json:// webhooks...) for failed runs and checks, separated by spaces "
                    "or commas; secret: never shown. Empty: alerts are logged only.",
    )
    drift_window_sessions: int = Field(default=5, ge=1, le=250, description="Newest sessions compared with the training window.")
    drift_psi_warn: float = Field(default=0.10, gt=0, description="PSI from which a feature (or the predictions) drift: warning.")
    drift_psi_block: float = Field(default=0.25, gt=0, description="PSI from which drift blocks the online store update.")
    drift_ks_warn: float = Field(default=0.10, gt=0, le=1, description="Kolmogorov-Smirnov statistic from which drift warns.")
    drift_ks_block: float = Field(default=0.20, gt=0, le=1, description="Kolmogorov-Smirnov statistic from which drift blocks.")

    @model_validator(mode="before")
    @classmethod
    def _servers_profile_serves_features_from_redis(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("postgres_url") and data.get("redis_url"):
            data.setdefault("feast_config", "prod")
        return data

    @field_validator("drift_psi_block", "drift_ks_block")
    @classmethod
    def _block_not_below_warn(cls, v: float, info: ValidationInfo) -> float:
        warn = info.field_name.replace("_block", "_warn")
        if warn in info.data and v < info.data[warn]:
            raise ValueError(f"must not be below ALPHALINE_{warn.upper()} ({info.data[warn]})")
        return v

    @field_validator("eod_cutoff")
    @classmethod
    def _cutoff_is_a_time(cls, v: str) -> str:
        from trader.market_hours import market_profile

        market_profile("crypto", cutoff=v)  # ValueError: not HH:MM
        return v

    @cached_property
    def profile(self) -> MarketProfile:
        """The market profile: calendar, trading day and EOD cut (:mod:`trader.market_hours`)."""
        from trader.market_hours import market_profile

        return market_profile(self.market, cutoff=self.eod_cutoff)

    @field_validator("home")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @cached_property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @cached_property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @cached_property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @cached_property
    def imports_dir(self) -> Path:
        return self.home / "imports"

    @cached_property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @cached_property
    def dbt_target_dir(self) -> Path:
        return self.home / "dbt" / "target"

    def alert_url_list(self) -> tuple[str, ...]:
        """The validated ``ALPHALINE_ALERT_URLS``; a bad one is a ``ConfigError`` naming its position, never its token."""
        from orchestration.errors import ConfigError
        from trader.alerts import ENV_VAR, env_urls
        from trader.errors import TraderConfigError

        try:
            return env_urls({ENV_VAR: self.alert_urls.get_secret_value()})
        except TraderConfigError as err:
            raise ConfigError(str(err).removeprefix("environment: ")) from None

    @cached_property
    def partitions_start_file(self) -> Path:
        """Where ``alphaline demo``/``ingest`` record the first session ingested into this home."""
        return self.dagster_home / "partitions_start"

    @cached_property
    def first_partition(self) -> dt.date:
        """First daily partition: ``partitions_start`` if set, else the first session ingested here, else ``market_start``.

        Read from settings and the home, never from the clock, so the same home loads the same definitions on any day.
        """
        if self.partitions_start is not None:
            return self.partitions_start
        try:
            return max(dt.date.fromisoformat(self.partitions_start_file.read_text().strip()), self.market_start)
        except (OSError, ValueError):
            return self.market_start


def record_first_session(settings: Settings, day: dt.date) -> None:
    """Let the partitions begin at ``day``, the first session about to be ingested (moves the start earlier only).

    Raises:
        ConfigError: ``ALPHALINE_PARTITIONS_START`` is set later than ``day`` (Dagster has no partition for it).
    """
    from orchestration.errors import ConfigError

    if settings.partitions_start is not None:
        if day < settings.partitions_start:
            raise ConfigError(f"{day}: before ALPHALINE_PARTITIONS_START={settings.partitions_start} (no partition for it; "
                              "set it earlier or unset it)")
        return
    path = settings.partitions_start_file
    try:
        recorded = dt.date.fromisoformat(path.read_text().strip())
    except (OSError, ValueError):
        recorded = None
    if recorded is None or day < recorded:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(day.isoformat() + "\n")


def describe_invalid(err: ValidationError) -> str:
    """One line naming each bad ``ALPHALINE_*`` variable, the value it had and why it was refused.

    Example:
        >>> try:
        ...     Settings(deployment="prdo")
        ... except ValidationError as err:
        ...     print(describe_invalid(err))
        ALPHALINE_DEPLOYMENT='prdo': input should be 'local' or 'prod'
    """
    parts = []
    for e in err.errors():
        name = "ALPHALINE_" + "_".join(str(p) for p in e["loc"]).upper()
        message = e["msg"][0].lower() + e["msg"][1:]
        parts.append(f"{name}={e.get('input')!r}: {message}" if e["type"] != "extra_forbidden" else f"{name}: not a known setting")
    return "; ".join(parts)


def require_folder(settings: Settings, path: Path | None = None) -> None:
    """Refuse (``ConfigError``) a ``path`` of the layout (default: ``ALPHALINE_HOME`` itself) that is a file."""
    from orchestration.errors import ConfigError

    path = settings.home if path is None else path
    if path.exists() and not path.is_dir():
        raise ConfigError(f"ALPHALINE_HOME={settings.home}: {path} is a file, not a folder (point ALPHALINE_HOME at a folder)")


def prepare_environment(settings: Settings) -> Settings:
    """Create the state folders and point every tool at them.

    Called by the CLI and the Dagster loader, never at import time.

    Raises:
        ConfigError: ``ALPHALINE_HOME`` (or a folder the layout needs inside it) is a file or cannot be created.
    """
    from orchestration.errors import ConfigError

    for d in (settings.home, settings.dagster_home, settings.reports_dir, settings.imports_dir):
        require_folder(settings, d)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"ALPHALINE_HOME={settings.home}: cannot create {d} ({exc.strerror})") from None
    from orchestration.deployment import DAGSTER_URL_VAR, configure

    servers_yaml = configure(settings)  # the servers profile: Dagster and Feast on PostgreSQL and Redis
    yaml_path = settings.dagster_home / "dagster.yaml"
    if servers_yaml is not None:
        yaml_path.write_text(servers_yaml)
    elif not yaml_path.exists() or DAGSTER_URL_VAR in yaml_path.read_text():
        yaml_path.write_text(_DAGSTER_YAML)
    for key, value in _TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    os.environ["ALPHALINE_HOME"] = str(settings.home)
    os.environ["ALPHALINE_MARKET"] = settings.market  # the trader and every Dagster step read the same profile
    os.environ["ALPHALINE_EOD_CUTOFF"] = settings.eod_cutoff
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home))
    os.environ["ALPHALINE_WAREHOUSE"] = str(settings.warehouse_path)
    # BentoML's model store (the registry) lives under ALPHALINE_HOME too (DESIGN.md §2).
    os.environ.setdefault("BENTOML_HOME", str(settings.home / "bentoml"))
    os.environ.setdefault("DBT_LOG_PATH", str(settings.home / "dbt" / "logs"))
    os.environ.setdefault("DBT_TARGET_PATH", str(settings.dbt_target_dir))
    # dbt runs as a subprocess: make this interpreter's scripts (the venv's dbt) findable
    # even when the venv is not activated (make demo, console scripts).
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return settings
