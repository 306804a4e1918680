"""The simulator's warehouse feed: ``marts.bars`` read-only, in UTC, exact decimals, the right timeframe only."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal as D

import duckdb
import pytest

from trader.brokers.bars import WarehouseBars, default_warehouse_path
from trader.brokers.sim import SimBroker, SimConfig
from trader.domain import ClientOrderId, Order, OrderFilled, Side, Symbol
from trader.errors import BrokerError

T0 = dt.datetime(2024, 3, 5, 14, 30, tzinfo=dt.UTC)


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")  # the writer's session zone must not leak into the bars
        conn.execute("CREATE SCHEMA marts")
        conn.execute("""CREATE TABLE marts.bars (symbol VARCHAR, timeframe VARCHAR, ts TIMESTAMPTZ, open DOUBLE, high DOUBLE,
                        low DOUBLE, close DOUBLE, volume DOUBLE, vwap DOUBLE, trade_count BIGINT, source VARCHAR)""")
        rows = [("AAA", "15m", T0 + i * dt.timedelta(minutes=15), 100.12 + i, 101.5 + i, 99.25 + i, 100.7 + i, 12345.5, None, 10, "synthetic")
                for i in range(4)]
        rows += [("BBB", "15m", T0 + dt.timedelta(minutes=15), 50.1, 51.0, 49.9, 50.3, 800.0, None, 5, "synthetic"),
                 ("AAA", "1d", T0, 1.0, 1.0, 1.0, 1.0, 1.0, None, 1, "synthetic")]
        conn.executemany("INSERT INTO marts.bars VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return path


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_warehouse_bars_reads_the_window_in_utc_with_exact_decimals(warehouse):
    feed = WarehouseBars(warehouse)
    bars = feed.bars({"AAA", "BBB"}, after=T0, until=T0 + dt.timedelta(minutes=30))
    assert [(b.symbol, b.ts) for b in bars] == [("AAA", T0 + dt.timedelta(minutes=15)), ("BBB", T0 + dt.timedelta(minutes=15)),
                                                 ("AAA", T0 + dt.timedelta(minutes=30))]
    first = bars[0]
    assert first.ts.tzinfo is dt.UTC and first.end == T0 + dt.timedelta(minutes=30)
    assert (first.open, first.high, first.low, first.volume) == (D("101.12"), D("102.5"), D("100.25"), D("12345.5"))


def test_warehouse_bars_keeps_to_the_timeframe_and_the_symbols_asked(warehouse):
    assert [b.symbol for b in WarehouseBars(warehouse).bars({"BBB"}, after=T0 - dt.timedelta(days=1), until=T0 + dt.timedelta(days=1))] == ["BBB"]
    daily = WarehouseBars(warehouse, timeframe="1d").bars({"AAA"}, after=T0 - dt.timedelta(days=1), until=T0)
    assert [(b.ts, b.close, b.end) for b in daily] == [(T0, D("1.0"), T0 + dt.timedelta(days=1))]


def test_warehouse_bars_never_writes_the_warehouse_and_does_not_hold_it_open(warehouse):
    before = digest(warehouse)
    broker = SimBroker(WarehouseBars(warehouse), config=SimConfig(max_participation=None), start=T0)
    broker.submit(Order(client_order_id=ClientOrderId("al-1"), symbol=Symbol("AAA"), side=Side.BUY, qty=D(3), created_at=T0))
    broker.advance_to(T0 + dt.timedelta(minutes=15))
    (event,) = broker.poll_events()  # the decision at T0 fills at the open of the bar starting at T0
    assert isinstance(event, OrderFilled) and (event.fill.price, event.fill.ts) == (D("100.12"), T0)
    assert digest(warehouse) == before
    with duckdb.connect(str(warehouse)) as writer:  # a writer (Dagster) can still open it between reads
        writer.execute("SELECT count(*) FROM marts.bars").fetchone()


def test_warehouse_bars_missing_warehouse_or_unknown_timeframe_is_a_one_line_error(tmp_path):
    with pytest.raises(BrokerError, match="no warehouse here"):
        WarehouseBars(tmp_path / "nope.duckdb").bars({"AAA"}, after=T0, until=T0 + dt.timedelta(hours=1))
    with pytest.raises(BrokerError, match="timeframe: '2m'"):
        WarehouseBars(tmp_path / "nope.duckdb", timeframe="2m")


def test_warehouse_bars_default_path_is_under_alphaline_home(tmp_path):
    assert default_warehouse_path({"ALPHALINE_HOME": str(tmp_path)}) == tmp_path / "warehouse.duckdb"
