"""Every check's approve and deny path, by reason code. Prices: AAA 100, BBB 50, CCC 20, XXX 10 (no sector)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from trader_builders import NOW, SECTORS, accepted, account, context, order, prediction, submit

from trader.audit import GENESIS, AuditRecord, verify_chain
from trader.config import DrawdownConfig, DrawdownTier, RiskLimits
from trader.domain import CancelOrder, ClientOrderId, Side, SubmitOrder, Symbol, TradingState
from trader.errors import DomainError
from trader.risk import DEFAULT_CHECKS, RiskContext, RiskDecision, RiskEngine, RiskReason
from trader.risk.record import decision_checks
from trader.store import TraderStore

R = RiskReason


def check(cmd, ctx: RiskContext, **limits) -> RiskDecision:
    return RiskEngine(RiskLimits(**limits), sectors=SECTORS).check(cmd, ctx)


def verdict(decision: RiskDecision, name: str) -> RiskReason:
    (result,) = [r for r in decision.results if r.check == name]
    assert result.approved == (result.reason is R.APPROVED)
    return result.reason


def test_risk_engine_with_a_small_fresh_order_in_an_open_market_approves_every_check():
    decision = check(submit(), context())
    assert decision.approved, decision.summary()
    assert [r.check for r in decision.results] == [name for name, _ in DEFAULT_CHECKS]
    assert decision.reason is R.APPROVED and decision.summary().startswith("APPROVED buy 10 AAA")


# -- trading state: the kill switch -------------------------------------------------------------

def test_risk_engine_when_kill_switch_active_denies_order():
    decision = check(submit(), context(state=TradingState.HALTED))
    assert not decision.approved and decision.reason is R.TRADING_HALTED


def test_risk_engine_when_halted_denies_even_a_risk_reducing_order():
    ctx = context(acct=account(90_000, AAA=(100, 100)), state=TradingState.HALTED)
    assert check(submit(side=Side.SELL, qty=50), ctx).reason is R.TRADING_HALTED


def test_risk_engine_when_halted_lets_cancels_through():
    decision = check(CancelOrder(client_order_id=ClientOrderId("al-1"), symbol=Symbol("AAA")), context(state=TradingState.HALTED))
    assert decision.approved


def test_risk_engine_when_reducing_approves_an_order_that_shrinks_the_position():
    ctx = context(acct=account(90_000, AAA=(100, 100)), state=TradingState.REDUCING)
    decision = check(submit(side=Side.SELL, qty=50, with_prediction=False), ctx)
    assert decision.approved, decision.summary()


@pytest.mark.parametrize(("symbol", "side", "qty"), [
    ("AAA", Side.BUY, 10),    # adds to the long
    ("AAA", Side.SELL, 150),  # flips it short
    ("BBB", Side.SELL, 10),   # opens a new short
])
def test_risk_engine_when_reducing_denies_orders_that_do_not_reduce(symbol, side, qty):
    ctx = context(acct=account(90_000, AAA=(100, 100)), state=TradingState.REDUCING)
    assert verdict(check(submit(symbol, side, qty), ctx), "trading_state") is R.TRADING_REDUCING_ONLY


def test_risk_engine_when_reducing_counts_working_sells_before_calling_an_order_reducing():
    working = accepted(order("AAA", Side.SELL, 50, cid="al-working"))
    ctx = context(acct=account(90_000, AAA=(100, 100)), state=TradingState.REDUCING, working_orders=(working,))
    assert verdict(check(submit(side=Side.SELL, qty=60), ctx), "trading_state") is R.TRADING_REDUCING_ONLY
    assert verdict(check(submit(side=Side.SELL, qty=50), ctx), "trading_state") is R.APPROVED


def test_risk_engine_when_kill_switch_set_before_restart_denies_order(store_url):
    with TraderStore(store_url) as store:
        store.set_trading_state(TradingState.HALTED, reason="ops kill", changed_by="alice", at=NOW)
    with TraderStore(store_url) as reopened:
        state = reopened.trading_state().state
    assert check(submit(), context(state=state)).reason is R.TRADING_HALTED


# -- restrictions, market hours, duplicates, throttle ----------------------------------------------

def test_risk_engine_denies_restricted_symbol_and_approves_others():
    assert verdict(check(submit("AAA"), context(), restricted_symbols={"AAA"}), "restricted_symbol") is R.SYMBOL_RESTRICTED
    assert verdict(check(submit("BBB"), context(), restricted_symbols={"AAA"}), "restricted_symbol") is R.APPROVED


@pytest.mark.parametrize(("when", "expected"), [
    (dt.datetime(2024, 3, 5, 14, 30), R.APPROVED),        # 09:30 New York: the open minute
    (dt.datetime(2024, 3, 5, 14, 29), R.MARKET_CLOSED),   # a minute before the open
    (dt.datetime(2024, 3, 5, 18, 30), R.APPROVED),        # 13:30 on a normal day
    (dt.datetime(2024, 11, 29, 17, 30), R.APPROVED),      # 12:30 on the day after Thanksgiving
    (dt.datetime(2024, 11, 29, 18, 30), R.MARKET_CLOSED),  # 13:30 then: after the 13:00 early close
    (dt.datetime(2024, 7, 4, 15, 0), R.MARKET_CLOSED),     # Independence Day
    (dt.datetime(2024, 3, 9, 15, 0), R.MARKET_CLOSED),     # a Saturday
])
def test_risk_engine_market_hours_follow_the_xnys_calendar(when, expected):
    assert verdict(check(submit(), context(now=when.replace(tzinfo=dt.UTC))), "market_hours") is expected


def test_risk_engine_market_hours_check_can_be_switched_off():
    saturday = dt.datetime(2024, 3, 9, 15, tzinfo=dt.UTC)
    assert verdict(check(submit(), context(now=saturday), market_hours_only=False), "market_hours") is R.APPROVED


def test_risk_engine_denies_a_client_order_id_already_used():
    cmd = submit(cid="al-used")
    assert verdict(check(cmd, context(known_client_order_ids=frozenset({"al-used"}))), "duplicate_order") is R.DUPLICATE_CLIENT_ORDER_ID


def test_risk_engine_denies_a_second_order_on_the_same_symbol_and_side_while_one_is_working():
    working = accepted(order("AAA", Side.BUY, 5, cid="al-working"))
    assert verdict(check(submit(), context(working_orders=(working,))), "duplicate_order") is R.DUPLICATE_WORKING_ORDER
    opposite = accepted(order("AAA", Side.SELL, 5, cid="al-working"))
    assert verdict(check(submit(), context(working_orders=(opposite,))), "duplicate_order") is R.APPROVED


@pytest.mark.parametrize(("sent", "ago_s", "expected"), [(60, 30, R.ORDER_RATE_EXCEEDED), (59, 30, R.APPROVED), (60, 61, R.APPROVED)])
def test_risk_engine_order_rate_throttle_counts_the_last_minute(sent, ago_s, expected):
    times = (NOW - dt.timedelta(seconds=ago_s),) * sent
    assert verdict(check(submit(), context(recent_order_times=times)), "order_rate") is expected


# -- predictions and prices ---------------------------------------------------------------------

@pytest.mark.parametrize(("pred", "expected"), [
    (prediction(), R.APPROVED),
    (prediction(stale=True), R.PREDICTION_STALE),
    (prediction(feature_ts=NOW - dt.timedelta(minutes=31)), R.PREDICTION_STALE),
    (prediction(feature_ts=NOW + dt.timedelta(minutes=1)), R.PREDICTION_FROM_FUTURE),
    (None, R.PREDICTION_MISSING),
])
def test_risk_engine_stale_or_missing_prediction_denies_new_risk(pred, expected):
    cmd = SubmitOrder(order=order(), prediction=pred)
    assert verdict(check(cmd, context()), "prediction_fresh") is expected


def test_risk_engine_allows_a_reducing_order_without_a_prediction():
    ctx = context(acct=account(90_000, AAA=(100, 100)))
    assert verdict(check(submit(side=Side.SELL, qty=100, with_prediction=False), ctx), "prediction_fresh") is R.APPROVED


@pytest.mark.parametrize(("cmd", "expected"), [
    (submit(limit="104"), R.APPROVED),
    (submit(limit="106"), R.PRICE_OUTSIDE_COLLAR),
    (submit(side=Side.SELL, limit="94"), R.PRICE_OUTSIDE_COLLAR),
    (submit(reference_price="100.5"), R.APPROVED),
    (submit(reference_price="90"), R.PRICE_OUTSIDE_COLLAR),
])
def test_risk_engine_price_collar_against_the_last_price(cmd, expected):
    assert verdict(check(cmd, context()), "price_collar") is expected


def test_risk_engine_without_a_last_price_denies_price_unavailable():
    ctx = context(prices={Symbol("BBB"): D(50)})
    assert verdict(check(submit("AAA"), ctx), "price_collar") is R.PRICE_UNAVAILABLE


# -- size and exposure ----------------------------------------------------------------------------

def test_risk_engine_max_notional_per_order():
    assert verdict(check(submit(qty=51), context(), max_notional_per_order=5000), "max_notional") is R.NOTIONAL_EXCEEDS_MAX_PER_ORDER
    assert verdict(check(submit(qty=50), context(), max_notional_per_order=5000), "max_notional") is R.APPROVED


def test_risk_engine_max_notional_does_not_block_a_reducing_order():
    ctx = context(acct=account(90_000, AAA=(100, 100)))
    assert verdict(check(submit(side=Side.SELL, qty=100), ctx, max_notional_per_order=5000), "max_notional") is R.APPROVED


def test_risk_engine_max_position_pct_of_equity():
    assert verdict(check(submit(qty=101), context()), "position_limit") is R.POSITION_EXCEEDS_MAX_PCT_EQUITY
    assert verdict(check(submit(qty=100), context()), "position_limit") is R.APPROVED  # exactly 10 %


def test_risk_engine_position_limit_counts_working_orders():
    working = accepted(order("AAA", Side.BUY, 15, cid="al-working"))
    ctx = context(acct=account(92_000, AAA=(80, 100)), working_orders=(working,))
    assert verdict(check(submit(qty=10), ctx), "position_limit") is R.POSITION_EXCEEDS_MAX_PCT_EQUITY  # 80+15+10 = 10.5 %


def test_risk_engine_gross_exposure_limit():
    acct = account(105_000, AAA=(400, 100), BBB=(-900, 50))  # equity 100k, gross 85k
    assert verdict(check(submit("CCC", qty=800), context(acct=acct)), "gross_exposure") is R.GROSS_EXPOSURE_EXCEEDED  # 101 %
    assert verdict(check(submit("CCC", qty=700), context(acct=acct)), "gross_exposure") is R.APPROVED  # 99 %


def test_risk_engine_net_exposure_limit_allows_orders_that_move_net_toward_zero():
    acct = account(50_000, AAA=(500, 100))  # equity 100k, net +50 %
    assert verdict(check(submit("CCC", qty=5), context(acct=acct)), "net_exposure") is R.NET_EXPOSURE_EXCEEDED
    assert verdict(check(submit("BBB", Side.SELL, 10), context(acct=acct)), "net_exposure") is R.APPROVED


def test_risk_engine_sector_exposure_limit():
    acct = account(75_000, AAA=(250, 100))  # tech 25 % of 100k
    assert verdict(check(submit("BBB", qty=120), context(acct=acct)), "sector_exposure") is R.SECTOR_EXPOSURE_EXCEEDED  # 31 %
    assert verdict(check(submit("BBB", qty=100), context(acct=acct)), "sector_exposure") is R.APPROVED  # 30 %
    assert verdict(check(submit("CCC", qty=100), context(acct=acct)), "sector_exposure") is R.APPROVED  # energy


def test_risk_engine_symbol_without_sector_is_denied_while_the_sector_limit_is_on():
    assert verdict(check(submit("XXX"), context()), "sector_exposure") is R.SECTOR_UNKNOWN
    assert verdict(check(submit("XXX"), context(), max_sector_pct=None), "sector_exposure") is R.APPROVED


# -- losses -------------------------------------------------------------------------------------

def test_risk_engine_daily_loss_limit_denies_new_risk_but_not_reductions():
    acct = account(90_000, AAA=(100, 100))  # equity 100k
    assert verdict(check(submit("BBB"), context(acct=acct, day_start=104_000)), "daily_loss") is R.DAILY_LOSS_LIMIT  # −3.85 %
    assert verdict(check(submit("BBB"), context(acct=acct, day_start=103_000)), "daily_loss") is R.APPROVED  # −2.91 %
    assert verdict(check(submit(side=Side.SELL, qty=100), context(acct=acct, day_start=104_000)), "daily_loss") is R.APPROVED


def test_risk_engine_drawdown_at_the_halt_tier_denies_new_risk():
    assert verdict(check(submit(), context(peak=120_000)), "drawdown") is R.DRAWDOWN_HALT  # 16.7 %
    assert verdict(check(submit(), context(peak=117_000)), "drawdown") is R.APPROVED  # 14.5 %


@pytest.mark.parametrize(("peak", "multiplier", "halt"), [
    (104_000, D(1), False),     # 3.8 %
    (106_000, D("0.75"), False),  # 5.7 %
    (112_000, D("0.5"), False),   # 10.7 %
    (120_000, D(0), True),        # 16.7 %
])
def test_risk_engine_drawdown_tiers_expose_the_size_multiplier(peak, multiplier, halt):
    status = RiskEngine(RiskLimits(), sectors=SECTORS).portfolio_status(context(peak=peak))
    assert (status.size_multiplier, status.flatten_and_halt) == (multiplier, halt)


def test_risk_engine_drawdown_tiers_are_configurable():
    tiers = DrawdownConfig(tiers=(DrawdownTier(at=D("0.02"), size_multiplier=D("0.9")),), flatten_and_halt_at=D("0.08"))
    engine = RiskEngine(RiskLimits(drawdown=tiers), sectors=SECTORS)
    assert engine.portfolio_status(context(peak=103_000)).size_multiplier == D("0.9")
    assert engine.portfolio_status(context(peak=110_000)).flatten_and_halt


def test_risk_engine_portfolio_status_flags_the_daily_loss():
    status = RiskEngine(RiskLimits(), sectors=SECTORS).portfolio_status(context(day_start=104_000))
    assert status.daily_loss_breached and status.daily_return < 0


def test_risk_engine_buying_power_counts_working_buys():
    assert verdict(check(submit(qty=10), context(buying_power=D(500))), "buying_power") is R.INSUFFICIENT_BUYING_POWER
    working = accepted(order("BBB", Side.BUY, 30, cid="al-working"))  # reserves 1,500
    ctx = context(buying_power=D(2000), working_orders=(working,))
    assert verdict(check(submit(qty=5), ctx), "buying_power") is R.APPROVED  # 500 of 500
    assert verdict(check(submit(qty=6), ctx), "buying_power") is R.INSUFFICIENT_BUYING_POWER


# -- fail closed ----------------------------------------------------------------------------------

def test_risk_engine_when_a_check_raises_denies_with_risk_check_error():
    def broken(view):
        raise RuntimeError("feed down")

    engine = RiskEngine(RiskLimits(), sectors=SECTORS, checks=(*DEFAULT_CHECKS, ("broken", broken)))
    decision = engine.check(submit(), context())
    assert not decision.approved and decision.reason is R.RISK_CHECK_ERROR
    assert "feed down" in decision.denials[0].message


def test_risk_engine_when_a_held_symbol_has_no_price_fails_closed():
    acct = account(100_000, CCC=(10, 20))
    ctx = context(acct=acct, prices={Symbol("AAA"): D(100)}, day_start=100_000, peak=100_000)
    decision = check(submit(), ctx)
    assert not decision.approved
    assert verdict(decision, "gross_exposure") is R.RISK_CHECK_ERROR


def test_risk_engine_prediction_for_another_symbol_fails_closed():
    cmd = SubmitOrder(order=order("AAA"), prediction=prediction("BBB"))
    assert verdict(check(cmd, context()), "prediction_fresh") is R.RISK_CHECK_ERROR


# -- a cycle of orders ----------------------------------------------------------------------------

def test_risk_engine_check_all_counts_orders_approved_earlier_in_the_cycle():
    engine = RiskEngine(RiskLimits(max_gross_exposure_pct=D("0.15")), sectors=SECTORS)
    decisions, ctx = engine.check_all([submit("AAA", qty=100), submit("CCC", qty=300)], context())
    assert engine.check(submit("CCC", qty=300), context()).approved  # alone it would pass
    assert [d.approved for d in decisions] == [True, False]
    assert decisions[1].reason is R.GROSS_EXPOSURE_EXCEEDED
    assert [o.symbol for o in ctx.working_orders] == ["AAA"]


def test_risk_engine_check_all_throttles_within_one_cycle():
    engine = RiskEngine(RiskLimits(max_orders_per_minute=2), sectors=SECTORS)
    decisions, _ = engine.check_all([submit("AAA"), submit("BBB"), submit("CCC")], context())
    assert [d.reason for d in decisions] == [R.APPROVED, R.APPROVED, R.ORDER_RATE_EXCEEDED]


def test_risk_decision_record_is_an_auditable_payload():
    decision = check(submit(), context(state=TradingState.HALTED))
    record = AuditRecord.create(seq=1, ts=NOW, kind="risk_decision", payload=decision.to_record(), prev_hash=GENESIS)
    assert verify_chain([record]).ok
    assert record.payload["reason"] == "TRADING_HALTED" and record.payload["model_version"] == "ens:test"
    assert {c["check"] for c in decision_checks(record.payload)} == {name for name, _ in DEFAULT_CHECKS}


def test_a_context_with_submitted_orders_has_the_book_figures_of_a_fresh_context_with_them_working():
    """with_submitted moves the cached projected/gross/net by each order; a context built afresh adds them all up."""
    ctx = context(acct=account(50_000, AAA=(100, 100), BBB=(-40, 50)), working_orders=(accepted(order("CCC", qty=5)),))
    assert (ctx.gross, ctx.net, ctx.projected) != (None, None, None)  # worked out: with_submitted moves them
    orders = [order("AAA", Side.SELL, 100, cid="al-flat"), order("BBB", Side.BUY, 60, cid="al-flip"),
              order("XXX", Side.SELL, "2.5", cid="al-new"), order("CCC", Side.BUY, 7, cid="al-more", limit="19.5")]
    moved = ctx
    for o in orders:
        moved = moved.with_submitted(o)
    fresh = context(acct=ctx.account, working_orders=moved.working_orders, recent_order_times=moved.recent_order_times)
    assert moved.projected == fresh.projected and list(moved.projected) == list(fresh.projected)
    assert (moved.gross, moved.net, moved.equity) == (fresh.gross, fresh.net, fresh.equity)
    assert len(moved.recent_order_times) == 4 and ctx.working_orders == (moved.working_orders[0],)


def test_a_context_without_a_price_for_a_submitted_symbol_still_fails_its_exposure_figures():
    ctx = context(prices={Symbol("AAA"): D(100)})
    _ = ctx.gross
    moved = ctx.with_submitted(order("ZZZ", qty=5))
    with pytest.raises(DomainError, match="no usable last price for ZZZ"):
        _ = moved.gross


def test_check_all_gives_the_decisions_of_one_check_per_order_against_a_fresh_context():
    engine = RiskEngine(RiskLimits(max_gross_exposure_pct=D("0.2")), sectors=SECTORS)
    commands = [submit("AAA", qty=60, cid="al-1"), submit("BBB", Side.SELL, 100, cid="al-2"), submit("CCC", qty=480, cid="al-3")]
    decisions, _ = engine.check_all(commands, context())
    ctx, expected = context(), []
    for command in commands:
        expected.append(engine.check(command, context(working_orders=ctx.working_orders,
                                                      recent_order_times=ctx.recent_order_times)))
        if expected[-1].approved:
            ctx = ctx.with_submitted(command.order)
    assert [d.to_record() for d in decisions] == [d.to_record() for d in expected]
    assert [d.reason for d in decisions] == [R.APPROVED, R.APPROVED, R.GROSS_EXPOSURE_EXCEEDED]  # together, not alone
