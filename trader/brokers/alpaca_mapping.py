"""Translations between alpaca-py's models and the trader's domain, for :mod:`trader.brokers.alpaca` (no I/O here).

* Alpaca's many order statuses fold onto the domain's life cycle (:data:`TERMINAL_STATUS`;
  everything else is still working: accepted, or partially filled once something filled).
* Money and quantities arrive as strings (or JSON numbers) and become exact ``Decimal``.
* alpaca-py's order *requests* are typed ``float``: :func:`order_request` sends a quantity
  or price only if the float's shortest ``repr`` reads back as exactly the same Decimal.
* Linked orders (:func:`linked_request`): a bracket is one request for the entry with
  ``take_profit``/``stop_loss``; an OCO pair is one ``limit`` request (the take-profit) with
  ``order_class=oco``. Alpaca names the legs itself; :func:`leg_of` finds them in its answer
  by type (take-profit: limit; stop-loss: stop or stop-limit).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any, TypeVar

from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderClass as AlpacaOrderClass
from alpaca.trading.enums import OrderSide
from alpaca.trading.enums import OrderStatus as AlpacaStatus
from alpaca.trading.enums import TimeInForce as AlpacaTimeInForce
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.models import Position as AlpacaPosition
from alpaca.trading.models import TradeAccount
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    StopLimitOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
    TrailingStopOrderRequest,
)

from trader.brokers.base import BrokerAccount, BrokerPosition
from trader.domain import (
    ZERO,
    ClientOrderId,
    Fill,
    FillId,
    Order,
    OrderClass,
    OrderId,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    to_symbol,
    to_utc,
)
from trader.errors import BrokerError, DomainError

T = TypeVar("T")

#: Alpaca statuses after which the order cannot fill any more (``replaced``: we never replace, so it is a cancel).
TERMINAL_STATUS: dict[AlpacaStatus, OrderStatus] = {
    AlpacaStatus.FILLED: OrderStatus.FILLED,
    AlpacaStatus.CANCELED: OrderStatus.CANCELED,
    AlpacaStatus.REPLACED: OrderStatus.CANCELED,
    AlpacaStatus.EXPIRED: OrderStatus.EXPIRED,
    AlpacaStatus.REJECTED: OrderStatus.REJECTED,
}


def dec(value: Any, name: str) -> Decimal:
    """An exact Decimal from Alpaca's string (or a JSON number: its shortest repr, never its binary expansion)."""
    if isinstance(value, bool) or value is None:
        raise DomainError(f"alpaca: {name}: {value!r} is not a number")
    try:
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except ArithmeticError:
        raise DomainError(f"alpaca: {name}: {value!r} is not a number") from None


def _status(raw: AlpacaOrder, qty: Decimal, filled: Decimal) -> OrderStatus:
    terminal = TERMINAL_STATUS.get(AlpacaStatus(raw.status))
    if terminal is not None:
        return terminal
    if filled <= 0:
        return OrderStatus.ACCEPTED
    return OrderStatus.FILLED if filled >= qty else OrderStatus.PARTIALLY_FILLED


def _price(raw: AlpacaOrder, name: str) -> Decimal | None:
    value = getattr(raw, name)
    return dec(value, name) if value not in (None, "") else None


def _prices(raw: AlpacaOrder, kind: OrderType) -> dict[str, Any]:
    """The price fields the domain allows for ``kind`` (a trailing stop's current ``stop_price`` is Alpaca's, not ours)."""
    names = {OrderType.LIMIT: ("limit_price",), OrderType.STOP: ("stop_price",), OrderType.MARKET: (),
             OrderType.STOP_LIMIT: ("limit_price", "stop_price"), OrderType.TRAILING_STOP: ("trail_percent", "trail_price")}[kind]
    return {name: _price(raw, name) for name in names}


def order_from_alpaca(raw: AlpacaOrder, *, client_order_id: ClientOrderId | None = None,
                      parent_id: ClientOrderId | None = None) -> Order:
    """The domain view of an Alpaca order; a bracket or OCO leg takes our ``client_order_id`` and its ``parent_id``."""
    if raw.qty is None or raw.symbol is None or raw.side is None:
        raise DomainError(f"alpaca: order {raw.client_order_id}: notional or multi-leg orders are not supported")
    qty, filled = dec(raw.qty, "qty"), dec(raw.filled_qty or 0, "filled_qty")
    kind = OrderType(str(getattr(raw.type or raw.order_type, "value", raw.type or raw.order_type or "market")))
    avg = dec(raw.filled_avg_price, "filled_avg_price") if raw.filled_avg_price not in (None, "") else None
    alpaca_class = str(getattr(raw.order_class, "value", raw.order_class or "simple")) or "simple"
    order_class = OrderClass(alpaca_class) if alpaca_class in ("bracket", "oco") else OrderClass.SIMPLE
    return Order(
        client_order_id=client_order_id or ClientOrderId(raw.client_order_id), symbol=to_symbol(raw.symbol),
        side=Side(str(raw.side.value)), qty=qty, created_at=raw.submitted_at or raw.created_at, order_type=kind,
        time_in_force=TimeInForce(str(raw.time_in_force.value)), status=_status(raw, qty, filled),
        order_id=OrderId(str(raw.id)), filled_qty=filled, avg_fill_price=avg if avg and filled > 0 else None,
        updated_at=raw.updated_at, order_class=order_class, parent_id=parent_id, **_prices(raw, kind),
    )


def leg_of(raw: AlpacaOrder, role: str) -> AlpacaOrder | None:
    """The ``take_profit`` (limit) or ``stop_loss`` (stop, stop-limit) leg in Alpaca's answer for a bracket or OCO."""
    wanted = ("limit",) if role == "take_profit" else ("stop", "stop_limit")
    for leg in raw.legs or []:
        if str(getattr(leg.type or leg.order_type, "value", leg.type)) in wanted:
            return leg
    return None


def _exact_float(value: Decimal, name: str) -> float:
    out = float(value)
    if Decimal(repr(out)) != value:
        raise DomainError(f"{name}: {value} cannot be sent exactly (alpaca-py's order request is a float)")
    return out


_REQUESTS: dict[OrderType, type[OrderRequest]] = {
    OrderType.MARKET: MarketOrderRequest, OrderType.LIMIT: LimitOrderRequest, OrderType.STOP: StopOrderRequest,
    OrderType.STOP_LIMIT: StopLimitOrderRequest, OrderType.TRAILING_STOP: TrailingStopOrderRequest,
}


def venue_time_in_force(order: Order) -> AlpacaTimeInForce:
    """The time in force Alpaca gets: the order's own, except ``day`` on a crypto pair, which goes as ``gtc``.

    Alpaca refuses ``day`` for crypto (it trades 24/7: there is no close to expire at); it takes ``gtc`` and ``ioc``.
    Other values go as they are, and Alpaca's own refusal (e.g. ``opg`` on a pair) reaches the trader as a rejection.

    Example:
        >>> import datetime as dt
        >>> from trader.domain import Side
        >>> o = Order(client_order_id="c1", symbol="BTC/USD", side=Side.BUY, qty=Decimal("0.0153"),
        ...           created_at=dt.datetime(2024, 3, 3, 12, tzinfo=dt.UTC))
        >>> venue_time_in_force(o).value
        'gtc'
    """
    tif = AlpacaTimeInForce(order.time_in_force.value)
    return AlpacaTimeInForce.GTC if tif is AlpacaTimeInForce.DAY and "/" in order.symbol else tif


def order_request(order: Order, **extra: Any) -> OrderRequest:
    """The alpaca-py request for ``order`` (any type), always under its own ``client_order_id``.

    Quantities go as they are, fractions included (crypto: ``0.0153`` BTC); crypto ``day`` orders go as ``gtc``.
    """
    fields: dict[str, Any] = {
        "symbol": order.symbol, "qty": _exact_float(order.qty, "qty"), "side": OrderSide(order.side.value),
        "time_in_force": venue_time_in_force(order), "client_order_id": order.client_order_id,
    }
    for name in ("limit_price", "stop_price", "trail_percent", "trail_price"):
        value = getattr(order, name)
        if value is not None:
            fields[name] = _exact_float(value, name)
    return _REQUESTS[order.order_type](**fields, **extra)


def linked_request(head: Order, legs: list[Order]) -> OrderRequest:
    """One request for a bracket (entry + legs) or an OCO pair (take-profit limit + stop-loss leg).

    Example:
        >>> import datetime as dt
        >>> from trader.domain import leg_client_order_id
        >>> ts = dt.datetime(2024, 3, 5, 15, tzinfo=dt.UTC)
        >>> kw = dict(symbol="AAA", side=Side.SELL, qty=Decimal(10), created_at=ts, order_class=OrderClass.OCO)
        >>> tp = Order(client_order_id=ClientOrderId("al-1"), order_type=OrderType.LIMIT, limit_price=Decimal(110), **kw)
        >>> sl = Order(client_order_id=leg_client_order_id(tp.client_order_id, "stop_loss"), order_type=OrderType.STOP,
        ...            stop_price=Decimal(95), parent_id=tp.client_order_id, **kw)
        >>> r = linked_request(tp, [sl])
        >>> r.order_class.value, r.take_profit.limit_price, r.stop_loss.stop_price, r.limit_price
        ('oco', 110.0, 95.0, None)
    """
    # An OCO's head is its take-profit; a bracket's head is the entry and the take-profit is a leg.
    take = head if head.order_class is OrderClass.OCO else next((o for o in legs if o.order_type is OrderType.LIMIT), None)
    stop = next((o for o in legs if o.order_type in (OrderType.STOP, OrderType.STOP_LIMIT)), None)
    if take is None or stop is None or take.limit_price is None or stop.stop_price is None:
        raise DomainError(f"order {head.client_order_id}: legs: a {head.order_class.value} needs a take-profit limit "
                          "and a stop-loss stop")
    stop_loss = StopLossRequest(stop_price=_exact_float(stop.stop_price, "stop_price"),
                                limit_price=_exact_float(stop.limit_price, "limit_price") if stop.limit_price else None)
    extra: dict[str, Any] = {"order_class": AlpacaOrderClass(head.order_class.value), "stop_loss": stop_loss,
                             "take_profit": TakeProfitRequest(limit_price=_exact_float(take.limit_price, "limit_price"))}
    if head.order_class is OrderClass.OCO:  # Alpaca takes the take-profit's price from take_profit, not limit_price
        return LimitOrderRequest(symbol=head.symbol, qty=_exact_float(head.qty, "qty"), side=OrderSide(head.side.value),
                                 time_in_force=venue_time_in_force(head),
                                 client_order_id=head.client_order_id, **extra)
    return order_request(head, **extra)


def parse_time(value: Any, name: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return to_utc(value, name)
    try:
        return to_utc(dt.datetime.fromisoformat(str(value)), name)
    except ValueError:
        raise DomainError(f"alpaca: {name}: {value!r} is not an ISO 8601 time") from None


def execution_id(activity_id: str) -> FillId:
    """The ``fill_id`` of an execution: the uuid Alpaca's trade updates call ``execution_id``.

    A ``FILL`` activity's id is ``"<transaction time>::<execution uuid>"``; the same execution on the
    trade-update stream carries only the uuid. Both become the uuid, so a fill seen on both paths is one fill.

    Example:
        >>> execution_id("20261207143012345::6f2c1a9e-0b1d-4c56-9a43-2d0d8c1f7e11")
        '6f2c1a9e-0b1d-4c56-9a43-2d0d8c1f7e11'
    """
    return FillId(str(activity_id).rsplit("::", 1)[-1])


def fill_from_activity(act: dict[str, Any], *, client_order_id: ClientOrderId, venue: str, account: str) -> Fill:
    """A ``FILL`` account activity as a domain fill; its execution uuid is the stable ``fill_id`` (fees: none for equities)."""
    return Fill(fill_id=execution_id(act["id"]), order_id=OrderId(str(act["order_id"])), client_order_id=client_order_id,
                symbol=to_symbol(str(act["symbol"])), side=Side.BUY if act["side"] == "buy" else Side.SELL,
                qty=dec(act["qty"], "activity.qty"), price=dec(act["price"], "activity.price"), fee=ZERO,
                ts=parse_time(act["transaction_time"], "activity.transaction_time"), venue=venue, account=account)


#: Quote currencies of Alpaca's crypto pairs, longest first: a position's ``BTCUSDT`` is ``BTC/USDT``.
_QUOTES = ("USDT", "USDC", "USD", "BTC")


def pair_symbol(symbol: str, asset_class: str | None) -> Symbol:
    """Alpaca lists crypto positions without the slash (``BTCUSD``); orders and bars use ``BTC/USD``.

    Example:
        >>> pair_symbol("BTCUSD", "crypto"), pair_symbol("ETH/USD", "crypto"), pair_symbol("AAPL", "us_equity")
        ('BTC/USD', 'ETH/USD', 'AAPL')
    """
    if asset_class != "crypto" or "/" in symbol:
        return Symbol(symbol)
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return Symbol(f"{symbol[: -len(quote)]}/{quote}")
    return Symbol(symbol)


def position_from_alpaca(raw: AlpacaPosition) -> BrokerPosition:
    qty = abs(dec(raw.qty, "position.qty"))
    sign = -1 if str(getattr(raw.side, "value", raw.side)) == "short" else 1
    asset_class = str(getattr(raw.asset_class, "value", raw.asset_class)) if raw.asset_class is not None else None
    return BrokerPosition(symbol=pair_symbol(raw.symbol, asset_class), qty=sign * qty, avg_entry_price=dec(raw.avg_entry_price, "avg_entry_price"))


def account_from_alpaca(raw: TradeAccount) -> BrokerAccount:
    return BrokerAccount(account_id=raw.account_number, cash=dec(raw.cash or 0, "cash"), equity=dec(raw.equity or 0, "equity"),
                         buying_power=dec(raw.buying_power or 0, "buying_power"), currency=raw.currency or "USD")


def error_message(exc: APIError) -> str:
    """Alpaca's ``message`` (or the raw body, shortened); it never carries our keys, which travel in headers."""
    try:
        body = json.loads(str(exc))
        message = body.get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return (message or str(exc) or "no message").strip().splitlines()[0][:200]


def fill_from_trade_update(data: dict[str, Any], *, client_order_id: ClientOrderId, venue: str, account: str) -> Fill:
    """A ``fill``/``partial_fill`` trade update (the raw JSON ``data``, strings kept exact) as a domain fill.

    Its ``fill_id`` is the ``execution_id``: the same id :func:`fill_from_activity` gives the execution.
    """
    order = data["order"]
    return Fill(fill_id=execution_id(data["execution_id"]), order_id=OrderId(str(order["id"])), client_order_id=client_order_id,
                symbol=to_symbol(str(order["symbol"])), side=Side.BUY if order["side"] == "buy" else Side.SELL,
                qty=dec(data["qty"], "trade_update.qty"), price=dec(data["price"], "trade_update.price"), fee=ZERO,
                ts=parse_time(data["timestamp"], "trade_update.timestamp"), venue=venue, account=account)


def _typed(kind: type[T], value: object) -> T:
    """alpaca-py answers ``Model | RawData``; we never ask for raw data, so anything else is a bug worth a clear error."""
    if not isinstance(value, kind):
        raise BrokerError(f"alpaca: expected a {kind.__name__} from alpaca-py, got {type(value).__name__}")
    return value
