"""Portfolio risk checks (VaR/CVaR, liquidity, correlation) by reason code, and the stress report.

Prices: AAA 100, BBB 50, CCC 20, XXX 10; equity 100,000. AAA and BBB share a factor (ρ ≈ 0.9),
CCC moves on its own; one-bar volatility ≈ 1 %.
"""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np
import pytest
from trader_builders import NOW, SECTORS, account, context, submit

from trader.config import RiskLimits
from trader.domain import Side, Symbol
from trader.history import MarketSnapshot
from trader.risk import RiskEngine, RiskReason
from trader.risk.portfolio import book_var, historical_var, parametric_var
from trader.risk.stress import stress_report

R = RiskReason


def snapshot(n: int = 500, *, adv: dict | None = None, min_observations: int = 60) -> MarketSnapshot:
    rng = np.random.default_rng(7)
    factor = rng.normal(0, 0.01, n)
    returns = np.column_stack([factor + rng.normal(0, 0.0045, n), factor + rng.normal(0, 0.0045, n),
                               rng.normal(0, 0.01, n), rng.normal(0, 0.01, n)])
    return MarketSnapshot(asof=NOW, symbols=(Symbol("AAA"), Symbol("BBB"), Symbol("CCC"), Symbol("XXX")), returns=returns,
                          adv=adv if adv is not None else {Symbol(s): D(1_000_000) for s in ("AAA", "BBB", "CCC", "XXX")},
                          min_observations=min_observations)


def verdict(cmd, ctx, name: str, **limits) -> tuple[RiskReason, str]:
    decision = RiskEngine(RiskLimits(**limits), sectors=SECTORS).check(cmd, ctx)
    (result,) = [r for r in decision.results if r.check == name]
    return result.reason, result.message


def test_historical_and_parametric_var_match_hand_computations():
    var, cvar = historical_var(np.arange(-50.0, 50.0), 0.95)
    assert var == pytest.approx(45.05) and cvar == pytest.approx(48.0)
    var, cvar = parametric_var(100.0, 0.99)  # z = 2.3263, φ(z)/(1 − 0.99) = 2.6652
    assert var == pytest.approx(232.635, abs=1e-3) and cvar == pytest.approx(266.521, abs=1e-3)


def test_parametric_var_of_one_position_scales_with_sqrt_horizon():
    snap = snapshot()
    sigma = float(np.std(snap.returns[:, 2], ddof=1)) * 10_000
    one, _ = book_var(snap, {Symbol("CCC"): 10_000.0}, method="parametric", confidence=0.99, horizon_bars=1)
    day, _ = book_var(snap, {Symbol("CCC"): 10_000.0}, method="parametric", confidence=0.99, horizon_bars=26)
    assert one == pytest.approx(2.3263479 * sigma, rel=1e-6) and day == pytest.approx(one * 26**0.5, rel=1e-12)


@pytest.mark.parametrize("method", ["historical", "parametric", "worst"])
def test_var_check_denies_an_order_that_takes_book_var_over_the_limit(method):
    ctx = context(market=snapshot())
    # 200 AAA = 20 % of equity; one-session 99 % VaR ≈ 2.33 · 1.1 % · √26 · 20,000 ≈ 2.6 % of equity
    reason, message = verdict(submit("AAA", qty=200), ctx, "value_at_risk", max_var_pct=D("0.02"), var_method=method)
    assert reason is R.VAR_LIMIT_EXCEEDED and f"{method} VaR 99% over 26 bars would be" in message
    assert verdict(submit("AAA", qty=200), ctx, "value_at_risk", max_var_pct=D("0.05"), var_method=method)[0] is R.APPROVED


def test_cvar_check_denies_with_its_own_code():
    ctx = context(market=snapshot())
    reason, _ = verdict(submit("AAA", qty=200), ctx, "expected_shortfall", max_cvar_pct=D("0.02"))
    assert reason is R.CVAR_LIMIT_EXCEEDED


def test_var_counts_the_book_not_only_the_order_and_a_hedge_passes():
    held = context(acct=account(AAA=(400, 100)), market=snapshot())  # 40 % in AAA: VaR already over 2 %
    assert verdict(submit("BBB", qty=100), held, "value_at_risk", max_var_pct=D("0.02"))[0] is R.VAR_LIMIT_EXCEEDED
    # shorting BBB (ρ ≈ 0.9 with AAA) lowers the book's VaR: allowed although the book stays over the limit
    assert verdict(submit("BBB", Side.SELL, qty=400), held, "value_at_risk", max_var_pct=D("0.02"))[0] is R.APPROVED
    # selling AAA only reduces: never blocked
    assert verdict(submit("AAA", Side.SELL, qty=100), held, "value_at_risk", max_var_pct=D("0.001"))[0] is R.APPROVED


def test_portfolio_checks_without_enough_history_deny_fail_closed():
    short = snapshot(n=30)
    for name, limits in (("value_at_risk", {"max_var_pct": D("0.5")}), ("correlation_concentration", {"max_correlated_pct": D(5)})):
        reason, message = verdict(submit("AAA"), context(market=short), name, **limits)
        assert reason is R.MARKET_HISTORY_UNAVAILABLE and "fewer than history.min_observations 60" in message
    reason, message = verdict(submit("AAA"), context(), "value_at_risk", max_var_pct=D("0.5"))
    assert reason is R.MARKET_HISTORY_UNAVAILABLE and "no market history configured" in message


def test_portfolio_checks_switched_off_by_default_approve_without_history():
    decision = RiskEngine(RiskLimits(), sectors=SECTORS).check(submit(), context())
    assert decision.approved, decision.summary()


def test_liquidity_check_denies_an_order_over_its_share_of_adv():
    ctx = context(market=snapshot(adv={Symbol("AAA"): D(2_000)}))
    reason, message = verdict(submit("AAA", qty=30), ctx, "liquidity", max_adv_pct=D("0.01"))
    assert reason is R.ORDER_EXCEEDS_ADV_LIMIT and "30 AAA is 1.50% of its ADV 2000; the limit is 1.00%" in message
    assert verdict(submit("AAA", qty=20), ctx, "liquidity", max_adv_pct=D("0.01"))[0] is R.APPROVED
    assert verdict(submit("BBB", qty=1), ctx, "liquidity", max_adv_pct=D("0.01"))[0] is R.MARKET_HISTORY_UNAVAILABLE


def test_correlation_check_counts_names_moving_together_and_not_a_hedge():
    long_aaa = context(acct=account(AAA=(200, 100)), market=snapshot())  # 20,000 in AAA; equity 120,000
    # + 20,000 long BBB (ρ ≈ 0.9): 40,000 = 33 % of equity in one bet
    reason, message = verdict(submit("BBB", qty=400), long_aaa, "correlation_concentration", max_correlated_pct=D("0.3"))
    assert reason is R.CORRELATED_EXPOSURE_EXCEEDED and "AAA, BBB move together" in message and "33.33%" in message
    # short BBB hedges AAA: not counted; CCC is uncorrelated: not counted
    assert verdict(submit("BBB", Side.SELL, qty=400), long_aaa, "correlation_concentration",
                   max_correlated_pct=D("0.3"))[0] is R.APPROVED
    assert verdict(submit("CCC", qty=1000), long_aaa, "correlation_concentration", max_correlated_pct=D("0.3"))[0] is R.APPROVED


def test_stress_report_shocks_market_and_sectors_in_money_and_scales_var_with_volatility():
    positions = {Symbol("AAA"): D(200), Symbol("CCC"): D(-500)}  # +20,000 tech, −10,000 energy
    prices = {Symbol("AAA"): D(100), Symbol("CCC"): D(20)}
    report = stress_report(positions, prices=prices, equity=D(100_000), snapshot=snapshot(), sectors=SECTORS,
                           limits=RiskLimits(max_var_pct=D("0.05")))
    by_name = {s.name: s for s in report.scenarios}
    assert by_name["market -5% in a bar (every name)"].pnl == D("-500.00")
    assert by_name["sector tech -10%"].pnl == D("-2000.00") and by_name["sector energy -10%"].pnl == D("1000.00")
    assert "market -5% in a bar (beta-scaled)" in by_name
    rows = report.var["rows"]
    assert D(rows["historical, vol x3"]["var"]) == pytest.approx(3 * D(rows["historical"]["var"]), abs=D("0.02"))
    assert any("vol x3: VAR" in n and "over the limit 5.00%" in n for n in report.notes)
    assert report.liquidity[0]["symbol"] == "AAA" and report.liquidity[0]["pct_adv"] == "0.02%"


def test_the_examples_in_the_portfolio_modules_run():
    import doctest

    import trader.history
    import trader.optimizer
    import trader.risk.portfolio
    import trader.risk.stress
    import trader.sizing

    for module in (trader.history, trader.optimizer, trader.risk.portfolio, trader.risk.stress, trader.sizing):
        assert doctest.testmod(module).failed == 0, module.__name__
