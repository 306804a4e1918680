"""Sizing cases worked out by hand (equity 10,000 unless said otherwise)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from trader_builders import NOW, prediction

from trader.config import SizingConfig
from trader.domain import Side, Symbol, make_client_order_id
from trader.sizing import orders_for_targets, size_orders, target_quantities, target_weights

EQUITY = D(10_000)
PRICES = {Symbol("AAA"): D(100), Symbol("BBB"): D(50), Symbol("CCC"): D(20), Symbol("DDD"): D(40)}


def four(**overrides):
    """AAA 0.9 long, BBB 0.5 long, CCC −0.2 short, DDD −0.8 short."""
    spec = {"AAA": (0.9, "long"), "BBB": (0.5, "long"), "CCC": (-0.2, "short"), "DDD": (-0.8, "short")}
    return [overrides.get(s) or prediction(s, score=x, direction=d) for s, (x, d) in spec.items()]


def weights(preds, **cfg):
    return target_weights(preds, SizingConfig(**cfg))[0]


def test_sizing_long_short_top_and_bottom_k_equal_weight():
    assert weights(four(), k=1, max_weight=D("0.5")) == {"AAA": D("0.5"), "BBB": 0, "CCC": 0, "DDD": D("-0.5")}


def test_sizing_long_only_takes_the_top_k_and_never_shorts():
    assert weights(four(), mode="long_only", k=2, max_weight=D(1)) == {"AAA": D("0.5"), "BBB": D("0.5"), "CCC": 0, "DDD": 0}


def test_sizing_respects_the_prediction_direction_unless_told_not_to():
    preds = four(AAA=prediction("AAA", score=0.9, direction="flat"))
    assert weights(preds, mode="long_only", k=1, max_weight=D(1))["BBB"] == D(1)
    assert weights(preds, mode="long_only", k=1, max_weight=D(1), respect_direction=False)["AAA"] == D(1)


def test_sizing_leaves_a_stale_prediction_out_and_holds_its_position():
    preds = four(AAA=prediction("AAA", score=0.9, stale=True))
    result = size_orders(preds, positions={Symbol("AAA"): D(10)}, prices=PRICES, equity=EQUITY,
                         config=SizingConfig(k=1, max_weight=D("0.5")), run_id="r", decision_ts=NOW)
    assert "AAA" not in result.weights and "stale" in result.skipped["AAA"]
    assert all(c.order.symbol != "AAA" for c in result.commands)


def test_sizing_vol_targeting_scales_by_target_over_vol_then_caps_the_gross():
    # base 1/4 each; × 0.2/vol → 0.5, 0.125, −0.125, −0.5; gross 1.25 > 1 → × 0.8
    vols = {"AAA": 0.1, "BBB": 0.4, "CCC": 0.4, "DDD": 0.1}
    w, _ = target_weights(four(), SizingConfig(k=2, target_vol=D("0.2"), max_weight=D(1)), vols=vols)
    assert w == {"AAA": D("0.4"), "BBB": D("0.1"), "CCC": D("-0.1"), "DDD": D("-0.4")}


def test_sizing_per_position_cap_applies_before_the_gross_check():
    vols = {"AAA": 0.1, "BBB": 0.4, "CCC": 0.4, "DDD": 0.1}
    w, _ = target_weights(four(), SizingConfig(k=2, target_vol=D("0.2"), max_weight=D("0.3")), vols=vols)
    assert w == {"AAA": D("0.3"), "BBB": D("0.125"), "CCC": D("-0.125"), "DDD": D("-0.3")}


def test_sizing_without_a_vol_estimate_skips_the_symbol():
    w, skipped = target_weights(four(), SizingConfig(k=1, target_vol=D("0.2"), max_weight=D(1)), vols={"AAA": 0.2})
    assert "DDD" not in w and "volatility" in skipped["DDD"]


def test_sizing_fractional_kelly_from_confidence_with_cap():
    preds = four(AAA=prediction("AAA", score=0.9, confidence=0.6), DDD=prediction("DDD", score=-0.8, direction="short", confidence=0.8))
    # AAA: 0.25 × (0.6 − 0.4) = 0.05; DDD: 0.25 × (0.8 − 0.2) = 0.15 → capped at 0.10
    w = weights(preds, k=1, weighting="kelly", kelly_fraction=D("0.25"), kelly_cap=D("0.1"), max_weight=D(1))
    assert (w["AAA"], w["DDD"]) == (D("0.05"), D("-0.1"))


def test_sizing_kelly_without_edge_gives_zero_and_payoff_ratio_matters():
    low = four(AAA=prediction("AAA", score=0.9, confidence=0.4))
    assert weights(low, mode="long_only", k=1, weighting="kelly")["AAA"] == 0
    even = four(AAA=prediction("AAA", score=0.9, confidence=0.5))  # 0.25 × (0.5 − 0.5 / 2)
    assert weights(even, mode="long_only", k=1, weighting="kelly", kelly_payoff=D(2))["AAA"] == D("0.0625")


def test_sizing_drawdown_size_multiplier_scales_the_book():
    w, _ = target_weights(four(), SizingConfig(k=1, max_weight=D("0.5")), size_multiplier=D("0.5"))
    assert (w["AAA"], w["DDD"]) == (D("0.25"), D("-0.25"))


@pytest.mark.parametrize(("fractional", "weight", "expected"), [
    (False, "0.5", D(166)),          # 5,000 / 30 = 166.67 → whole shares, toward zero
    (True, "0.5", D("166.6666")),    # 4 decimals, toward zero
    (True, "-0.5", D(-166)),         # fractional shorts are not allowed: whole shares
])
def test_sizing_quantities_whole_or_fractional(fractional, weight, expected):
    q, _ = target_quantities({Symbol("AAA"): D(weight)}, equity=EQUITY, prices={Symbol("AAA"): D(30)},
                             config=SizingConfig(fractional=fractional))
    assert q["AAA"] == expected and isinstance(q["AAA"], D)


def _orders(targets, current, **cfg):
    return orders_for_targets(targets, current=current, prices=PRICES, equity=EQUITY, config=SizingConfig(**cfg),
                              run_id="r", decision_ts=NOW)


def test_sizing_no_order_below_the_minimum_notional():
    commands, skipped = _orders({"AAA": D(50)}, {"AAA": D(46)}, min_order_notional=D(500))  # 4 × 100 = 400
    assert commands == [] and "minimum order notional" in skipped["AAA"]


def test_sizing_no_order_when_the_weight_change_is_below_the_threshold_but_a_full_close_goes_through():
    commands, skipped = _orders({"AAA": D(50), "BBB": D(0)}, {"AAA": D(49), "BBB": D(2)}, rebalance_threshold=D("0.02"))
    assert "rebalance threshold" in skipped["AAA"]  # 100 / 10,000 = 1 % < 2 %
    assert [(c.order.symbol, c.order.side, c.order.qty) for c in commands] == [("BBB", Side.SELL, D(2))]


def test_sizing_a_target_across_zero_is_one_order_for_the_whole_change():
    commands, _ = _orders({"AAA": D(-5)}, {"AAA": D(10)})
    assert [(c.order.side, c.order.qty) for c in commands] == [(Side.SELL, D(15))]


def test_sizing_end_to_end_orders_carry_prediction_reference_price_and_deterministic_ids():
    kwargs = {"positions": {Symbol("DDD"): D(-25)}, "prices": PRICES, "equity": EQUITY,
              "config": SizingConfig(k=1, max_weight=D("0.5")), "run_id": "r", "decision_ts": NOW}
    result = size_orders(four(), **kwargs)
    assert result.quantities == {"AAA": D(50), "BBB": D(0), "CCC": D(0), "DDD": D(-125)}
    assert [(c.order.symbol, c.order.side, c.order.qty) for c in result.commands] == [
        ("AAA", Side.BUY, D(50)), ("DDD", Side.SELL, D(100))]
    aaa = result.commands[0]
    assert aaa.prediction.symbol == "AAA" and aaa.reference_price == D(100)
    assert aaa.order.client_order_id == make_client_order_id(run_id="r", decision_ts=NOW, symbol="AAA", side=Side.BUY)
    assert [c.order.client_order_id for c in size_orders(four(), **kwargs).commands] == \
        [c.order.client_order_id for c in result.commands]


def test_sizing_counts_working_orders_as_pending_so_they_are_not_resent():
    result = size_orders(four(), positions={}, pending={Symbol("AAA"): D(50), Symbol("DDD"): D(-125)}, prices=PRICES,
                         equity=EQUITY, config=SizingConfig(k=1, max_weight=D("0.5")), run_id="r", decision_ts=NOW)
    assert result.commands == []
