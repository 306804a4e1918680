"""Fractional crypto quantities through the tax lots and reports; the EOD cut of a crypto trading day."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal as D

from trader.compliance.fills import ComplianceFill
from trader.compliance.lots import Ledger, close_day
from trader.compliance.reports import write_reports


def _fill(fid: str, side: str, qty: str, price: str, ts: dt.datetime) -> ComplianceFill:
    return ComplianceFill(fill_id=fid, order_id=fid, client_order_id=fid, symbol="BTC/USD", side=side, qty=qty, price=price,
                          fee="0", ts=ts, venue="SIM", account="A1")


T0 = dt.datetime(2024, 3, 3, 10, 0, tzinfo=dt.UTC)  # a Sunday: crypto trades


def test_a_fractional_sell_leaves_the_exact_remainder_and_basis():
    ledger = Ledger()
    ledger.apply_all([_fill("b1", "buy", "0.0153", "43210.55", T0), _fill("s1", "sell", "0.01", "44000.10", T0 + dt.timedelta(hours=1))])
    (lot,) = ledger.open_lots("BTC/USD")
    assert lot.qty == D("0.0053") and lot.cost == D("229.015915")  # 0.0053 × 43210.55, exactly
    (sold,) = ledger.disposals
    assert (sold.qty, sold.basis, sold.proceeds) == (D("0.01"), D("432.1055"), D("440.0010"))
    assert sold.basis + lot.cost == D("0.0153") * D("43210.55")


def test_reports_keep_fractional_quantities(tmp_path):
    fills = [_fill("b1", "buy", "0.0153", "43210.55", T0), _fill("s1", "sell", "0.01", "44000.10", T0 + dt.timedelta(hours=1))]
    close = close_day(fills, day=dt.date(2024, 3, 3), closing_marks={"BTC/USD": D("43500")}, opening_marks={})
    out = write_reports(close, tmp_path)
    with (out.directory / "tax_lots.csv").open() as f:
        lots = list(csv.DictReader(f))
    assert [(r["symbol"], D(r["qty"])) for r in lots] == [("BTC/USD", D("0.0053"))]
    form = (out.directory / "form_8949.csv").read_text()
    assert form.splitlines()[1] == "I,0.01 sh BTC/USD,2024-03-03,2024-03-03,440.00,432.11,,,7.89"


def test_a_crypto_fill_belongs_to_its_utc_day_at_the_midnight_cut(monkeypatch):
    late = _fill("b1", "buy", "0.5", "2300.1", dt.datetime(2024, 3, 2, 23, 30, tzinfo=dt.UTC))  # 18:30 in New York
    monkeypatch.setenv("ALPHALINE_MARKET", "crypto")
    assert late.trade_date == dt.date(2024, 3, 2)
    after = _fill("b2", "buy", "0.5", "2300.1", dt.datetime(2024, 3, 3, 0, 30, tzinfo=dt.UTC))  # 19:30 New York, Mar 2
    assert after.trade_date == dt.date(2024, 3, 3)
    monkeypatch.setenv("ALPHALINE_MARKET", "equities")
    assert _fill("b3", "buy", "1", "10", dt.datetime(2024, 3, 3, 0, 30, tzinfo=dt.UTC)).trade_date == dt.date(2024, 3, 2)
