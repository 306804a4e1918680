"""The trader must run alone on a small box: its core never imports the heavy stack or our other packages."""

from __future__ import annotations

import subprocess
import sys

CORE = ["trader.domain", "trader.predictions", "trader.config", "trader.sizing", "trader.risk", "trader.store",
        "trader.market_hours", "trader.errors", "trader.brokers", "trader.brokers.bars", "trader.brokers.sim",
        "trader.brokers.alpaca", "trader.reconcile",
        # the run loop and its front ends: `trader run`, the ops API, the HTTP prediction client
        "trader.runner", "trader.prediction_client", "trader.api", "trader.cli"]
FORBIDDEN = ["dagster", "feast", "torch", "bentoml", "polars", "duckdb", "orchestration", "models", "serving", "feature_repo"]


def test_trader_core_imports_none_of_the_heavy_stack():
    code = (f"import sys\nfor m in {CORE!r}: __import__(m)\n"
            f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({FORBIDDEN!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
