"""Serving settings: typed, read from the environment, validated when the service starts.

``ALPHALINE_HOME`` roots the feature store (DESIGN.md §2); everything else is an
``ALPHALINE_SERVING_*`` variable:

========================================  =======  ==================================================
variable                                  default  meaning
========================================  =======  ==================================================
``ALPHALINE_SERVING_STALE_BARS``          TTL (4)  features older than this many bars are stale
``ALPHALINE_SERVING_STALE_CLOCK``         data     ``data``: age against the newest features in the
                                                   store; ``wall``: against the current time
``ALPHALINE_SERVING_DEAD_BAND``           0.2      confidence below this → direction ``flat``
``ALPHALINE_SERVING_MAX_SYMBOLS``         1000     symbols per ``/predict`` request
``ALPHALINE_SERVING_MAX_ROWS``            1000     rows per ``/predict_rows`` request
``ALPHALINE_SERVING_ONLINE_CACHE_SECONDS``  1.0    snapshot age limit for online stores without a
                                                   file to watch (Redis); SQLite is watched instead
``ALPHALINE_SERVING_ADMIN_TOKEN``         unset    bearer token for ``POST /reload``; unset → only
                                                   loopback clients may reload
========================================  =======  ==================================================

Example:
    >>> ServingSettings(home="/tmp/x", dead_band=0.1).stale_bars is None
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """What the prediction service is configured by. Unknown keyword arguments are refused."""

    # populate_by_name: ``ServingSettings(home=...)`` in code; the environment uses the aliases only (an alias
    # "home" would read $HOME).
    model_config = SettingsConfigDict(env_prefix="ALPHALINE_SERVING_", extra="forbid", frozen=True,
                                      populate_by_name=True)

    home: Path = Field(default=Path(".alphaline"), validation_alias=AliasChoices("ALPHALINE_HOME"),
                       description="ALPHALINE_HOME: root of the feature store.")
    feast_config: Literal["local", "prod"] = Field(
        default="local", validation_alias=AliasChoices("ALPHALINE_FEAST_CONFIG"),
        description="feature_repo/feature_store.yaml (local) or feature_store.prod.yaml.")
    stale_bars: int | None = Field(default=None, ge=1, le=10_000,
                                   description="Bars of age that make features stale (default: the feature views' TTL).")
    stale_clock: Literal["data", "wall"] = "data"
    dead_band: float = Field(default=0.2, ge=0.0, lt=1.0)
    max_symbols: int = Field(default=1000, ge=1, le=100_000)
    max_rows: int = Field(default=1000, ge=1, le=100_000)
    online_cache_seconds: float = Field(default=1.0, ge=0.0, le=3600.0)
    admin_token: SecretStr | None = None
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes (python -m serving.serve --workers N sets "
                         "it with BentoML's own setting); with more than one, /reload is refused: restart instead.")

    @field_validator("home")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()
