"""The compliance package stays lean (DESIGN.md §1) and its docstring examples run."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

MODULES = ["trader.compliance", "trader.compliance.fills", "trader.compliance.holding", "trader.compliance.lots",
           "trader.compliance.tax_lots", "trader.compliance.ledger", "trader.compliance.day_close",
           "trader.compliance.wash_sales", "trader.compliance.reports", "trader.compliance.merkle",
           "trader.compliance.worm", "trader.compliance.audit_check", "trader.compliance.names", "trader.compliance.anchor",
           "trader.compliance.store_check", "trader.audit_hmac"]


def test_importing_compliance_pulls_in_no_heavy_or_sibling_packages():
    code = ("import sys, trader.compliance; "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())
    forbidden = {"dagster", "feast", "torch", "bentoml", "pandas", "polars", "orchestration", "models", "serving", "feature_repo"}
    assert loaded & forbidden == set()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
