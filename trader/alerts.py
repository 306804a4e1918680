"""Alerts: notifications through `apprise <https://github.com/caronc/apprise>`_ (Slack, e-mail, webhooks, ... by URL).

Where the URLs come from:

* ``trader.yaml``: ``alerts: {urls: [...], denied_cycles: 3}`` for the trader;
* the environment: ``ALPHALINE_ALERT_URLS`` (URLs separated by spaces or commas) for the Dagster sensors and the
  trader alike. URLs that carry a token (Slack, e-mail passwords) belong here: secrets stay out of files.

With no URL configured, sending is a no-op that logs one line per alert it would have sent. A URL apprise does
not understand is refused at start-up with one line naming the input, the field and the reason; the URL itself is
never echoed or logged in full (it may carry a token), only its scheme or apprise's privacy-masked form.

:class:`TraderAlerts` watches the run loop's cycles (a :class:`trader.runner.CycleObserver`) and notifies once when
trading becomes HALTED and once per streak of ``denied_cycles`` cycles in a row with denied orders.

Example:
    >>> alerter = Alerter(())           # nothing configured: a no-op with a log line
    >>> alerter.send("trader HALTED", "drawdown 15%")
    False
    >>> Alerter.from_urls(["htp://host"], source="trader.yaml", field="alerts.urls")
    Traceback (most recent call last):
    ...
    trader.errors.TraderConfigError: trader.yaml: alerts.urls.0: 'htp://…' is not a URL apprise can send to (unknown scheme or missing parts)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from trader.domain import TradingState
from trader.errors import TraderConfigError

if TYPE_CHECKING:
    from trader.runner import CycleReport

ENV_VAR = "ALPHALINE_ALERT_URLS"
Level = Literal["info", "success", "warning", "failure"]
_log = logging.getLogger("alphaline.alerts")


def _shown(url: str) -> str:
    """What of a URL may appear in a message: its scheme only (the rest may be a token)."""
    scheme, sep, _ = url.partition("://")
    return f"'{scheme}://…'" if sep else f"'{url[:12]}…'" if len(url) > 12 else repr(url)


def check_url(url: str) -> str:
    """``url`` if apprise can send to it, else ``ValueError`` with a message that does not repeat the URL's secrets."""
    from apprise import Apprise

    if not isinstance(url, str) or not url.strip():
        raise ValueError("an empty alert URL")
    if Apprise.instantiate(url.strip()) is None:
        raise ValueError(f"{_shown(url)} is not a URL apprise can send to (unknown scheme or missing parts)")
    return url.strip()


def env_urls(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The URLs in ``ALPHALINE_ALERT_URLS`` (validated; ``TraderConfigError`` names the item)."""
    text = (os.environ if env is None else env).get(ENV_VAR, "").strip()
    if not text:
        return ()
    from apprise.utils.parse import parse_urls  # apprise's own splitting: a comma inside a query string stays

    return Alerter.from_urls(parse_urls(text), source="environment", field=ENV_VAR).urls


class Alerter:
    """Sends one notification to every configured URL; never raises for a receiver that is down.

    Args:
        urls: apprise URLs, already validated (use :meth:`from_urls` for user input).
        timeout_s: per-service timeout, so a dead receiver cannot stall a trading cycle for long.
    """

    def __init__(self, urls: Sequence[str], *, timeout_s: float = 5.0) -> None:
        self.urls = tuple(urls)
        self.timeout_s = timeout_s
        self._apprise: Any = None

    @classmethod
    def from_urls(cls, urls: Sequence[str], *, source: str, field: str, timeout_s: float = 5.0) -> Alerter:
        """Validate each URL; the first bad one is a :class:`TraderConfigError` ``source: field.i: reason``."""
        good = []
        for i, url in enumerate(urls):
            try:
                good.append(check_url(url))
            except ValueError as exc:
                raise TraderConfigError(source, f"{field}.{i}", str(exc)) from None
        return cls(good, timeout_s=timeout_s)

    def describe(self) -> str:
        """``2 alert destinations (json, slack)`` — schemes only, for a start-up log line."""
        if not self.urls:
            return f"no alert URLs configured (trader.yaml alerts.urls or {ENV_VAR}): alerts are logged only"
        schemes = sorted({u.partition("://")[0] for u in self.urls})
        return f"{len(self.urls)} alert destination(s) ({', '.join(schemes)})"

    def send(self, title: str, body: str, *, level: Level = "failure") -> bool:
        """Notify every destination; ``True`` if all of them took it. Failures are logged, never raised."""
        if not self.urls:
            _log.info("alert not sent (%s): %s — %s", self.describe(), title, body)
            return False
        result = self._client().notify(body=body, title=title, notify_type=level)
        if not result:
            _log.warning("alert %r: not delivered to every destination (%s)", title, self.describe())
        return bool(result)

    def _client(self) -> Any:
        if self._apprise is None:
            from apprise import Apprise, AppriseAsset

            # memory: apprise keeps no state files outside ALPHALINE_HOME; a short timeout per service.
            asset = AppriseAsset(storage_mode="memory", service_timeout=self.timeout_s)
            self._apprise = Apprise(asset=asset)
            for url in self.urls:
                self._apprise.add(url)
        return self._apprise


class TraderAlerts:
    """A run-loop observer: one alert when trading goes HALTED, one per streak of cycles with denials.

    Args:
        alerter: where notifications go.
        run_id: named in every message (which trader).
        denied_cycles: cycles in a row with at least one denied order before the denial alert.
        initial_state: the store's state when the run starts; a trader restarted while already HALTED does not
            alert again (someone already knows), a transition seen during the run does.
    """

    def __init__(self, alerter: Alerter, *, run_id: str, denied_cycles: int = 3,
                 initial_state: TradingState | None = None) -> None:
        self.alerter, self.run_id, self.denied_cycles = alerter, run_id, denied_cycles
        self._state = initial_state
        self._streak = 0
        self._streak_reasons: dict[str, int] = {}

    def on_cycle(self, report: CycleReport, *, denials: Mapping[str, int], seconds: float) -> None:
        previous, self._state = self._state, report.state
        if report.state is TradingState.HALTED and previous is not TradingState.HALTED:
            self.alerter.send(f"Alphaline trader {self.run_id}: HALTED", f"{report.ts.isoformat()}: {report.status}")
        if not denials:
            self._streak, self._streak_reasons = 0, {}
            return
        self._streak += 1
        for reason, n in denials.items():
            self._streak_reasons[reason] = self._streak_reasons.get(reason, 0) + n
        if self._streak == self.denied_cycles:
            reasons = ", ".join(f"{r} × {n}" for r, n in sorted(self._streak_reasons.items(), key=lambda kv: -kv[1]))
            self.alerter.send(f"Alphaline trader {self.run_id}: orders denied {self._streak} cycles in a row",
                              f"{report.ts.isoformat()}: {reasons}", level="warning")
