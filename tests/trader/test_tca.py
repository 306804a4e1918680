"""Transaction cost analysis: slippage and implementation shortfall against the decision's price, per order and per session."""

from __future__ import annotations

import json
from decimal import Decimal as D

from fake_venue import PredictionServer
from test_trader_cli import cli, write_config
from trader_builders import NOW, fill, order

from trader.domain import OrderStatus, Side
from trader.store import TraderStore
from trader.tca import session_tca, summarise


def _decided(store: TraderStore, o, *, price: str, approved: bool = True) -> None:
    store.append_audit("risk_decision", {"command": "SubmitOrder", "client_order_id": o.client_order_id, "approved": approved,
                                         "reference_price": price, "side": o.side.value, "qty": str(o.qty), "symbol": o.symbol}, ts=NOW)


def test_a_buy_filled_higher_and_a_sell_filled_lower_both_cost_and_add_up(store):
    buy, sell = order("AAA", Side.BUY, 100, cid="al-b"), order("BBB", Side.SELL, 40, cid="al-s")
    for o, price in ((buy, "50.00"), (sell, "20.00")):
        store.save_order(o)
        _decided(store, o, price=price)
    store.save_order(order("CCC", Side.BUY, 5, cid="al-denied"))  # denied: no arrival to measure against
    _decided(store, order("CCC", Side.BUY, 5, cid="al-denied"), price="10", approved=False)
    store.record_fill(fill("f-1", cid="al-b", symbol="AAA", side=Side.BUY, qty="60", price="50.05", fee="0.30"))
    store.record_fill(fill("f-2", cid="al-b", symbol="AAA", side=Side.BUY, qty="40", price="50.10", fee="0.20"))
    store.record_fill(fill("f-3", cid="al-s", symbol="BBB", side=Side.SELL, qty="30", price="19.98", fee="0"))
    rows = {r.client_order_id: r for r in session_tca(store)}
    assert set(rows) == {"al-b", "al-s"}
    b, s = rows["al-b"], rows["al-s"]
    assert b.avg_price == D("50.07") and b.slippage_bps == D("14.00") and b.shortfall == D("7.50")  # 0.07 × 100 + 0.50 fees
    assert s.filled == D(30) and s.slippage_bps == D("10.00") and s.shortfall == D("0.60")  # sold 0.02 lower, 30 of 40 filled
    total = summarise(rows.values())
    assert total["filled_notional"] == D("5600.00") and total["shortfall"] == D("8.10") and total["fees"] == D("0.50")
    assert total["slippage_bps"] == D("13.57")  # (7.00 + 0.60) / 5,600 notional at arrival
    assert total["fill_rate"] == D("0.9286")  # 130 of 140 shares


def test_trader_tca_and_explain_show_the_cost_of_a_sim_session(home):
    with PredictionServer() as server:
        cfg = write_config(home, server.url)
        assert cli("run", "--mode", "sim", "--config", cfg).exit_code == 0
    out = cli("tca", "--config", cfg)
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[0].split()[:4] == ["order", "symbol", "side", "arrival"]
    assert "bps (notional-weighted)" in out.output.splitlines()[-1]
    report = json.loads(cli("tca", "--json", "--date", "2024-03-05", "--config", cfg).output)
    with TraderStore(f"sqlite:///{home / 'trader' / 'sim.db'}") as store:
        filled = [o for o in store.list_orders() if o.status is OrderStatus.FILLED]
    assert report["summary"]["orders"] >= len(filled) > 0
    one = next(r for r in report["orders"] if r["client_order_id"] == filled[0].client_order_id)
    # The sim fills at the next bar's open: the slippage is that move from the decision bar's close, signed by side.
    sign = 1 if one["side"] == "buy" else -1
    expected = sign * (D(one["avg_price"]) - D(one["arrival"])) / D(one["arrival"]) * 10_000
    assert D(one["slippage_bps"]) == expected.quantize(D("0.01"))
    assert "tca         arrival " in cli("explain", filled[0].client_order_id, "--config", cfg).output
    assert json.loads(cli("tca", "--json", "--date", "2024-03-06", "--config", cfg).output)["summary"]["orders"] == 0


def test_trader_track_compares_the_session_with_its_backtest_and_explain_shows_the_backtest_fill(home):
    with PredictionServer() as server:
        cfg = write_config(home, server.url)
        assert cli("run", "--mode", "sim", "--config", cfg).exit_code == 0
    # The sim venue charges the backtest's own costs by default (trader.yaml sim:): it fills exactly like its backtest.
    same = cli("track", "--mode", "sim", "--config", cfg)
    assert same.exit_code == 0, same.output
    assert "difference +0.00  tracking error 0" in same.output
    free = cli("track", "--mode", "sim", "--config", cfg, "--commission-bps", "0", "--half-spread-bps", "0")
    assert "difference -" in free.output and (home / "reports" / "tracking" / "sim-2024-03-05.png").is_file()
    with TraderStore(f"sqlite:///{home / 'trader' / 'sim.db'}") as store:
        filled = next(o for o in store.list_orders() if o.status is OrderStatus.FILLED)
    assert "backtest    the same order through the backtest's costs: average fill " in cli(
        "explain", filled.client_order_id, "--config", cfg).output
    missing = cli("track", "--mode", "sim", "--config", cfg, "--date", "2024-03-08")
    assert missing.exit_code == 1 and "no cycle on 2024-03-08" in missing.output
