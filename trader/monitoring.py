"""What watches a trading run: the alerts and the metrics that ``trader.yaml`` and the environment ask for.

Example:
    >>> from trader.config import TraderConfig
    >>> cfg = TraderConfig.model_validate({"universe": {"symbols": ["AAA"]}})
    >>> [type(o).__name__ for o in run_observers(cfg, run_id="sim-2024-03-05", env={})]
    ['TraderAlerts']
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from trader.alerts import Alerter, TraderAlerts, env_urls
from trader.config import TraderConfig
from trader.domain import TradingState
from trader.runner import CycleObserver

_log = logging.getLogger("alphaline.trader")


def run_observers(cfg: TraderConfig, *, run_id: str, initial_state: TradingState | None = None,
                  env: Mapping[str, str] | None = None, echo: Callable[[str], object] | None = None) -> list[CycleObserver]:
    """Alerts (always: with no URL they log), and metrics served on ``metrics.port`` when set.

    ``echo`` gets one line for each (where alerts go, where metrics are served), e.g. ``click.echo`` in ``trader run``.

    Raises:
        TraderConfigError: a URL in ``ALPHALINE_ALERT_URLS`` that apprise cannot send to (one line).
    """
    alerter = Alerter([*cfg.alerts.urls, *env_urls(env)])
    say = echo or (lambda line: _log.info("%s", line))
    say(f"alerts: {alerter.describe()}")
    observers: list[CycleObserver] = [TraderAlerts(alerter, run_id=run_id, denied_cycles=cfg.alerts.denied_cycles,
                                                   initial_state=initial_state)]
    if cfg.metrics.port is not None:
        from trader.metrics import TraderMetrics

        metrics = TraderMetrics()
        metrics.serve(cfg.metrics.port, cfg.metrics.host)
        observers.append(metrics)
        say(f"metrics: http://{cfg.metrics.host}:{cfg.metrics.port}/metrics")
    return observers
