"""The EOD ledger reads the splits and dividends the trader applied: tax lots follow the same split as positions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

from orchestration.defs.compliance import sources
from trader.compliance import close_day
from trader.compliance.corporate_actions import LedgerAction
from trader.corporate_actions import CorporateAction, apply_action
from trader.domain import Fill
from trader.store import TraderStore

EX = dt.date(2024, 3, 6)


def _fill(fid: str, side: str, qty: str, price: str, ts: dt.datetime) -> Fill:
    return Fill(fill_id=fid, order_id=f"o-{fid}", client_order_id=f"c-{fid}", symbol="AAA", side=side, qty=D(qty), price=D(price),
                fee=D(0), ts=ts, venue="SIM", account="A1")


def test_eod_sources_when_the_trader_applied_a_split_and_a_dividend_give_the_ledger_the_same_book(tmp_path):
    url = f"sqlite:///{tmp_path / 'trader.db'}"
    with TraderStore(url) as store:
        store.record_fill(_fill("f1", "buy", "100", "50", dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)))
        at = dt.datetime(2024, 3, 6, 14, 45, tzinfo=dt.UTC)
        apply_action(store, CorporateAction(symbol="AAA", ex_date=EX, kind="cash_dividend", amount=D("0.30")), at=at)
        apply_action(store, CorporateAction(symbol="AAA", ex_date=EX, kind="split", ratio=D(2)), at=at)
        store.record_fill(_fill("f2", "sell", "50", "26", dt.datetime(2024, 3, 6, 15, tzinfo=dt.UTC)))
        position = store.positions()["AAA"]

    actions = sources.read_corporate_actions(url, through=EX)
    assert actions == [LedgerAction(symbol="AAA", ex_date=EX, kind="cash_dividend", amount=D("0.30")),
                       LedgerAction(symbol="AAA", ex_date=EX, kind="split", ratio=D(2))]
    assert sources.read_corporate_actions(url, through=EX, after=EX) == []  # a checkpoint at the ex-date holds them
    close = close_day(sources.read_fills(url, through=EX), day=EX, opening_marks={"AAA": D(52)},
                      closing_marks={"AAA": D(26)}, actions=actions)
    (lot,) = close.ledger.open_lots()
    assert (lot.qty, lot.cost, lot.acquired) == (position.qty, D(3750), dt.date(2024, 3, 5)) == (D(150), D(3750), dt.date(2024, 3, 5))
    (sale,) = close.ledger.disposals
    assert (sale.qty, sale.basis, sale.gain) == (D(50), D(1250), D(50))
    assert close.roll_forward.income == D(30) and close.roll_forward.ok
