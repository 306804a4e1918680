import polars as pl
import pytest

from orchestration.market.bars import conform
from orchestration.market.synthetic import FAULT_REASONS, SyntheticConfig, SyntheticMarket
from orchestration.market.validation import validate_bars
from tests.conftest import utc

NOW = utc(2024, 1, 10)


def _bars(**faults: int) -> pl.DataFrame:
    cfg = SyntheticConfig(n_symbols=4, n_sectors=2, faults=faults)
    return SyntheticMarket(cfg).fetch(utc(2024, 1, 2), utc(2024, 1, 6), now=NOW).bars


@pytest.mark.parametrize("fault", sorted(FAULT_REASONS))
def test_validate_bars_when_fault_injected_quarantines_it_with_its_reason(fault: str):
    clean_total = _bars().height
    bars = _bars(**{fault: 3})
    result = validate_bars(bars, now=NOW)
    reason = FAULT_REASONS[fault]
    assert result.rejected.height == 3, result.rejected
    assert all(reason in r for r in result.rejected["reason"].to_list())
    assert result.clean.height + result.rejected.height == bars.height  # nothing dropped
    appended = bars.height - clean_total
    assert result.clean.height == clean_total - (3 - appended)  # clean rows flow on


def test_validate_bars_rejected_rows_keep_original_values_as_text():
    bars = _bars(nonpositive_price=1)
    bad = bars.filter(pl.col("low") <= 0)
    result = validate_bars(bars, now=NOW)
    row = result.rejected.row(0, named=True)
    assert row["low"] == str(bad["low"][0]) and row["symbol"] == bad["symbol"][0]
    assert row["source_row"] == bad["source_row"][0]
    assert row["reason"] == "price_not_positive:low"


def test_validate_bars_when_a_bar_is_missing_reports_the_calendar_gap():
    bars = _bars()
    gap = bars.filter(~((pl.col("symbol") == "BBB") & (pl.col("ts") == utc(2024, 1, 3, 16, 0))))
    result = validate_bars(gap, now=NOW)
    assert result.rejected.height == 0
    assert result.gaps.rows() == [("BBB", "15m", utc(2024, 1, 3).date(), 26, 25)]


def _one(symbol: str, timeframe: str, ts, **prices) -> pl.DataFrame:
    row = {"symbol": [symbol], "timeframe": [timeframe], "ts": [ts], "open": [10.0], "high": [11.0], "low": [9.0],
           "close": [10.5], "volume": [100.0], "source": ["test"], "source_row": [2]}
    row.update({k: [v] for k, v in prices.items()})
    return conform(pl.DataFrame(row))


def test_validate_bars_daily_bar_on_a_holiday_is_outside_the_session():
    result = validate_bars(_one("SPY", "1d", utc(2024, 7, 4, 13, 30)), now=NOW.replace(year=2025))
    assert result.rejected["reason"].to_list() == ["outside_session"]


def test_validate_bars_daily_bar_at_session_open_is_accepted():
    result = validate_bars(_one("SPY", "1d", utc(2024, 7, 5, 13, 30)), now=NOW.replace(year=2025))
    assert result.rejected.height == 0


def test_validate_bars_crypto_trades_on_weekends_on_the_24_7_calendar():
    weekend = utc(2024, 1, 6, 3, 15)
    assert validate_bars(_one("BTC/USD", "15m", weekend), now=NOW).rejected.height == 0
    assert validate_bars(_one("AAPL", "15m", weekend), now=NOW).rejected["reason"].to_list() == ["outside_session"]


def test_validate_bars_infinite_volume_is_rejected():
    result = validate_bars(_one("SPY", "15m", utc(2024, 1, 3, 15, 0), volume=float("inf")), now=NOW)
    assert result.rejected["reason"].to_list() == ["volume_not_finite:volume"]
