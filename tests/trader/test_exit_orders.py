"""Stop, trailing and linked orders: domain validation, the store, the exit policy config and the risk checks on exits."""

from __future__ import annotations

import sqlite3
from decimal import Decimal as D

import pytest
from fake_venue import config
from trader_builders import NOW, account, context

from trader.config import TraderConfig, load_config
from trader.domain import ClientOrderId, Order, OrderClass, OrderType, Side, SubmitOrder, Symbol, TradingState, leg_client_order_id
from trader.errors import DomainError
from trader.risk import RiskEngine, RiskReason
from trader.store import TraderStore


def make(cid: str = "al-1", side: Side = Side.SELL, qty: int = 10, **kw) -> Order:
    return Order(client_order_id=ClientOrderId(cid), symbol=Symbol("AAA"), side=side, qty=D(qty), created_at=NOW, **kw)


def oco(take: str = "110", stop: str = "95", qty: int = 10, side: Side = Side.SELL) -> list[Order]:
    return [make("al-tp", side, qty, order_type=OrderType.LIMIT, limit_price=D(take), order_class=OrderClass.OCO),
            make(leg_client_order_id(ClientOrderId("al-tp"), "stop_loss"), side, qty, order_type=OrderType.STOP,
                 stop_price=D(stop), order_class=OrderClass.OCO, parent_id=ClientOrderId("al-tp"))]


# -- domain ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kw", "message"), [
    ({"order_type": OrderType.STOP}, "stop_price: required for stop orders"),
    ({"order_type": OrderType.STOP_LIMIT, "stop_price": D(95)}, "limit_price: required for stop_limit orders"),
    ({"order_type": OrderType.MARKET, "stop_price": D(95)}, "stop_price: not allowed for market orders"),
    ({"order_type": OrderType.LIMIT, "limit_price": D(95), "trail_price": D(1)}, "trail_price: not allowed for limit orders"),
    ({"order_type": OrderType.STOP, "stop_price": D(-1)}, "stop_price: must be > 0"),
    ({"order_type": OrderType.TRAILING_STOP}, "a trailing stop needs exactly one of them"),
    ({"order_type": OrderType.TRAILING_STOP, "trail_percent": D(5), "trail_price": D(1)}, "needs exactly one of them"),
    ({"order_type": OrderType.TRAILING_STOP, "trail_percent": D(100)}, "trail_percent: must be < 100"),
    ({"parent_id": ClientOrderId("al-0")}, "parent_id: only bracket and oco orders have a parent"),
    ({"order_class": OrderClass.OCO}, "order_type: a oco exit is a limit, stop or stop_limit order, not market"),
])
def test_order_with_wrong_prices_or_links_is_refused_naming_the_field(kw, message):
    with pytest.raises(DomainError, match=message):
        make(**kw)


def test_order_links_tell_exit_legs_and_their_pair():
    tp, sl = oco()
    entry = make("al-e", Side.BUY, order_class=OrderClass.BRACKET)
    leg = make("al-e-sl", order_type=OrderType.STOP, stop_price=D(95), order_class=OrderClass.BRACKET, parent_id=entry.client_order_id)
    assert (tp.oco_group, sl.oco_group, leg.oco_group, entry.oco_group) == ("al-tp", "al-tp", "al-e", None)
    assert (entry.is_exit_leg, leg.is_exit_leg, leg.is_held_leg, sl.is_held_leg) == (False, True, True, False)
    with pytest.raises(DomainError, match="leg role"):
        leg_client_order_id(ClientOrderId("al-e"), "trailing")


def test_store_keeps_stop_trailing_and_linked_orders_exactly(store):
    trail = make("al-trail", order_type=OrderType.TRAILING_STOP, trail_percent=D("2.50"))
    for order in [*oco(stop="95.05"), trail]:
        store.save_order(order)
        assert store.get_order(order.client_order_id) == order


def test_store_created_before_exit_orders_gains_their_columns(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the orders table as the first stores made it
        conn.execute("CREATE TABLE orders (client_order_id VARCHAR(128) PRIMARY KEY, order_id VARCHAR(128), symbol VARCHAR(15) "
                     "NOT NULL, side VARCHAR(4) NOT NULL, order_type VARCHAR(16) NOT NULL, time_in_force VARCHAR(8) NOT NULL, "
                     "qty VARCHAR(64) NOT NULL, limit_price VARCHAR(64), status VARCHAR(20) NOT NULL, filled_qty VARCHAR(64) "
                     "NOT NULL, avg_fill_price VARCHAR(64), fees VARCHAR(64) NOT NULL, status_reason TEXT NOT NULL, "
                     "created_at VARCHAR NOT NULL, updated_at VARCHAR NOT NULL)")
        conn.execute("INSERT INTO orders VALUES ('al-old', NULL, 'AAA', 'buy', 'market', 'day', '5', NULL, 'new', '0', NULL, "
                     "'0', '', '2024-03-05T15:00:00.000000+00:00', '2024-03-05T15:00:00.000000+00:00')")
    with TraderStore(f"sqlite:///{path}") as store:
        old = store.get_order("al-old")
        assert old is not None and old.order_class is OrderClass.SIMPLE and old.stop_price is None
        store.save_order(oco()[1])
        assert store.get_order("al-tp-sl").stop_price == D(95)


# -- config ---------------------------------------------------------------------------------------
def test_exit_policy_is_off_by_default_and_refuses_unknown_keys():
    assert not config().exits.enabled
    assert config(exits={"max_holding_bars": 26}).exits.enabled
    with pytest.raises(ValueError, match="stop_los_pct"):
        TraderConfig.model_validate({"universe": {"symbols": ["AAA"]}, "exits": {"stop_los_pct": "0.05"}})
    with pytest.raises(ValueError, match="stop_loss_pct"):
        TraderConfig.model_validate({"universe": {"symbols": ["AAA"]}, "exits": {"stop_loss_pct": "1.5"}})


def test_example_config_documents_every_exit_setting():
    example = load_config("trader/trader.example.yaml")
    assert not example.exits.enabled
    text = open("trader/trader.example.yaml").read()
    assert all(f"  {name}:" in text for name in example.exits.model_fields)


# -- risk -----------------------------------------------------------------------------------------
ENGINE = RiskEngine(config().risk, sectors={"AAA": "tech", "BBB": "tech", "CCC": "energy"})
LONG = account(90_000, AAA=(10, 100))


def check(command: SubmitOrder, **ctx):
    return ENGINE.check(command, context(**{"acct": LONG, **ctx}))


def test_risk_sell_stop_above_the_market_is_denied_as_wrong_side():
    decision = check(SubmitOrder(order=make(order_type=OrderType.STOP, stop_price=D(101)), exit_reason="stop_loss"))
    assert decision.reason is RiskReason.STOP_PRICE_WRONG_SIDE and "below the last price 100" in decision.summary()


def test_risk_take_profit_below_the_market_is_denied_as_wrong_side():
    tp, _ = oco(take="99")
    assert check(SubmitOrder(order=tp, exit_reason="protect")).reason is RiskReason.TAKE_PROFIT_WRONG_SIDE


def test_risk_exit_that_would_open_or_grow_a_position_is_denied():
    grow = SubmitOrder(order=make(side=Side.BUY), exit_reason="stop_loss")
    flip = SubmitOrder(order=make(qty=11), exit_reason="take_profit")
    assert check(grow).reason is check(flip).reason is RiskReason.EXIT_INCREASES_POSITION
    assert check(SubmitOrder(order=make(qty=10), exit_reason="time")).approved


def test_risk_exit_passes_a_halted_kill_switch_only_when_it_reduces():
    close = SubmitOrder(order=make(), exit_reason="stop_loss", reference_price=D(100))
    assert check(close, state=TradingState.HALTED).approved
    assert check(SubmitOrder(order=make(side=Side.BUY), exit_reason="stop_loss"), state=TradingState.HALTED).reason \
        is RiskReason.TRADING_HALTED
    assert check(SubmitOrder(order=make()), state=TradingState.HALTED).reason is RiskReason.TRADING_HALTED  # not an exit


def test_risk_oco_pair_passes_and_its_legs_do_not_count_as_working_orders():
    ctx = context(acct=LONG)
    decisions, after = ENGINE.check_all([SubmitOrder(order=o, exit_reason="protect") for o in oco()], ctx)
    assert [d.approved for d in decisions] == [True, True]  # 10 % away: the price collar does not apply to exits
    assert after.working_orders == () and len(after.exit_orders) == 2 and after.projected == {Symbol("AAA"): D(10)}
    model_sell = SubmitOrder(order=make("al-model", qty=5), reference_price=D(100))
    assert ENGINE.check(model_sell, after).approved  # a resting exit does not make it a duplicate working sell
