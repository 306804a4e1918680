"""Prometheus metrics of the trader (`prometheus_client <https://prometheus.github.io/client_python/>`_).

Two sources, because the run loop and the ops API are separate processes:

* :class:`TraderMetrics` — a :class:`trader.runner.CycleObserver` inside ``trader run``: cycles, orders sent,
  fills, denials by reason code, cycle latency, equity, cash and the trading state. ``trader run --metrics-port
  9108`` serves them on ``http://127.0.0.1:9108/metrics``.
* :class:`StoreCollector` — read from the state store at each scrape, so the ops API's ``GET /metrics`` is right
  whoever wrote the store: trading state, equity and cash of the last cycle and its age, working orders, open
  positions, fills and audit records.

Every metric is prefixed ``alphaline_trader_``. Each object owns its registry, so tests and two traders in one
process never collide.

Example:
    >>> from prometheus_client import generate_latest
    >>> m = TraderMetrics()
    >>> m.denials.labels(reason="NOTIONAL_EXCEEDS_MAX_PER_ORDER").inc()
    >>> b'alphaline_trader_order_denials_total{reason="NOTIONAL_EXCEEDS_MAX_PER_ORDER"} 1.0' in generate_latest(m.registry)
    True
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trader.domain import TradingState

if TYPE_CHECKING:
    from trader.runner import CycleReport
    from trader.store import TraderStore

PREFIX = "alphaline_trader"
STATES = [s.value for s in TradingState]
#: Cycle latency buckets (seconds): a sim cycle takes milliseconds, a live one waits on the prediction service.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class TraderMetrics:
    """The run loop's metrics; pass it to :class:`~trader.runner.Runner` as an observer."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.cycles = Counter(f"{PREFIX}_cycles", "Decision cycles run.", registry=r)
        self.orders = Counter(f"{PREFIX}_orders_submitted", "Orders sent to the venue.", registry=r)
        self.fills = Counter(f"{PREFIX}_fills", "Fills recorded.", registry=r)
        self.denials = Counter(f"{PREFIX}_order_denials", "Orders denied, by risk reason code (or the venue's refusal).",
                               ["reason"], registry=r)
        self.refused = Counter(f"{PREFIX}_cycles_refused", "Cycles refused: no features from the bar that had just closed.",
                               registry=r)
        self.behind = Counter(f"{PREFIX}_predictions_behind_bar",
                              "Predictions held because their features were older than the bar decided on.", registry=r)
        self.latency = Histogram(f"{PREFIX}_cycle_seconds", "Wall time of one decision cycle.", buckets=BUCKETS, registry=r)
        self.equity = Gauge(f"{PREFIX}_equity", "Equity after the last cycle (account currency).", registry=r)
        self.cash = Gauge(f"{PREFIX}_cash", "Cash after the last cycle (account currency).", registry=r)
        self.last_cycle = Gauge(f"{PREFIX}_last_cycle_timestamp_seconds", "Decision time of the last cycle (Unix).", registry=r)
        self.state = Enum(f"{PREFIX}_state", "Trading state (the kill switch).", states=STATES, registry=r)

    def on_cycle(self, report: CycleReport, *, denials: Mapping[str, int], seconds: float) -> None:
        self.cycles.inc()
        self.orders.inc(report.submitted)
        self.fills.inc(report.fills)
        self.refused.inc(int(report.refused))
        self.behind.inc(report.behind)
        for reason, n in denials.items():
            self.denials.labels(reason=reason).inc(n)
        self.latency.observe(seconds)
        self.equity.set(float(report.equity))
        self.cash.set(float(report.cash))
        self.last_cycle.set(report.ts.timestamp())
        self.state.state(report.state.value)

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread (ends with the process); returns the server."""
        from prometheus_client import start_http_server

        from trader.errors import TraderConfigError

        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise TraderConfigError("trader.yaml", "metrics.port", f"cannot serve metrics on {host}:{port} "
                                    f"({exc.strerror or exc})") from None
        return server


class StoreCollector(Collector):
    """Metrics read from a :class:`~trader.store.TraderStore` at scrape time (the ops API's ``/metrics``).

    Args:
        store: the state store.
        clock: "now" for the last cycle's age (UTC); injectable for tests.
    """

    def __init__(self, store: TraderStore, *, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.store, self.clock = store, clock

    def collect(self) -> Iterator[Metric]:
        state = self.store.trading_state().state
        g = GaugeMetricFamily(f"{PREFIX}_state", "Trading state (1 for the current one).", labels=["state"])
        for name in STATES:
            g.add_metric([name], 1.0 if name == state.value else 0.0)
        yield g
        yield GaugeMetricFamily(f"{PREFIX}_working_orders", "Orders that may still fill.", value=len(self.store.working_orders()))
        positions = self.store.positions().values()
        yield GaugeMetricFamily(f"{PREFIX}_open_positions", "Symbols with a non-zero position.",
                                value=sum(1 for p in positions if p.qty != 0))
        yield GaugeMetricFamily(f"{PREFIX}_fills_recorded", "Fills in the store.", value=len(self.store.list_fills()))
        seq, _head = self.store.audit_head()
        yield GaugeMetricFamily(f"{PREFIX}_audit_records", "Records in the hash-chained audit log.", value=seq)
        last = self.store.latest_audit("cycle")
        if last is not None:
            ts = dt.datetime.fromisoformat(last.payload["ts"])
            yield GaugeMetricFamily(f"{PREFIX}_equity", "Equity at the last cycle.", value=float(last.payload["equity"]))
            yield GaugeMetricFamily(f"{PREFIX}_cash", "Cash at the last cycle.", value=float(last.payload["cash"]))
            yield GaugeMetricFamily(f"{PREFIX}_last_cycle_timestamp_seconds", "Decision time of the last cycle (Unix).",
                                    value=ts.timestamp())
            yield GaugeMetricFamily(f"{PREFIX}_last_cycle_age_seconds", "Seconds since the last cycle's decision time.",
                                    value=(self.clock() - ts).total_seconds())


def store_registry(store: TraderStore) -> CollectorRegistry:
    """A registry holding only :class:`StoreCollector` over ``store``."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    return registry
