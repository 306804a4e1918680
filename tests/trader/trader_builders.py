"""Builders shared by the trader tests (imported as ``trader_builders``). Every time is injected: no wall clock."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

from trader.domain import (
    Account,
    ClientOrderId,
    Fill,
    Order,
    OrderAccepted,
    OrderId,
    OrderType,
    Position,
    Side,
    SubmitOrder,
    Symbol,
    TradingState,
)
from trader.predictions import Prediction
from trader.risk import RiskContext

#: Tuesday 2024-03-05 10:00 New York: a regular session minute.
NOW = dt.datetime(2024, 3, 5, 15, 0, tzinfo=dt.UTC)
PRICES = {Symbol("AAA"): D(100), Symbol("BBB"): D(50), Symbol("CCC"): D(20), Symbol("XXX"): D(10)}
SECTORS = {"AAA": "tech", "BBB": "tech", "CCC": "energy"}


def order(symbol: str = "AAA", side: Side = Side.BUY, qty: int | str = 10, *, cid: str | None = None,
          limit: str | None = None, at: dt.datetime = NOW) -> Order:
    return Order(client_order_id=ClientOrderId(cid or f"al-{symbol}-{side}-{qty}"), symbol=Symbol(symbol), side=side,
                 qty=D(qty), order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                 limit_price=D(limit) if limit else None, created_at=at)


def prediction(symbol: str = "AAA", *, score: float = 0.5, direction: str = "long", confidence: float = 0.6,
               feature_ts: dt.datetime = NOW - dt.timedelta(minutes=15), stale: bool = False) -> Prediction:
    return Prediction(symbol=Symbol(symbol), score=score, direction=direction, confidence=confidence,
                      feature_ts=feature_ts, stale=stale, model_version="ens:test")


def submit(symbol: str = "AAA", side: Side = Side.BUY, qty: int | str = 10, *, limit: str | None = None,
           cid: str | None = None, with_prediction: bool = True, reference_price: str | None = None) -> SubmitOrder:
    return SubmitOrder(order=order(symbol, side, qty, cid=cid, limit=limit),
                       prediction=prediction(symbol) if with_prediction else None,
                       reference_price=D(reference_price) if reference_price else None)


def account(cash: int | str = 100_000, **holdings: tuple[int, int]) -> Account:
    """``account(cash, AAA=(qty, avg_cost))``: cash plus positions at an average cost."""
    positions = {Symbol(s): Position(symbol=Symbol(s), qty=D(q), avg_cost=D(c)) for s, (q, c) in holdings.items()}
    return Account(cash=D(cash), positions=positions)


def context(*, acct: Account | None = None, state: TradingState = TradingState.ACTIVE, now: dt.datetime = NOW,
            prices: dict | None = None, day_start: int | str | None = None, peak: int | str | None = None,
            **kwargs) -> RiskContext:
    acct = acct or account()
    prices = PRICES if prices is None else prices
    def equity() -> D:
        return acct.equity(prices)

    return RiskContext(now=now, trading_state=state, account=acct, prices=prices,
                       day_start_equity=D(day_start) if day_start is not None else equity(),
                       peak_equity=D(peak) if peak is not None else equity(), **kwargs)


def fill(fill_id: str = "f-1", *, cid: str = "al-1", symbol: str = "AAA", side: Side = Side.BUY, qty: str = "10",
         price: str = "100", fee: str = "0", at: dt.datetime = NOW) -> Fill:
    return Fill(fill_id=fill_id, order_id=OrderId("b-" + cid), client_order_id=ClientOrderId(cid), symbol=Symbol(symbol),
                side=side, qty=D(qty), price=D(price), fee=D(fee), ts=at, venue="sim", account="test")


def accepted(o: Order, at: dt.datetime = NOW) -> Order:
    return o.apply(OrderAccepted(client_order_id=o.client_order_id, ts=at, order_id=OrderId("b-" + o.client_order_id)))
