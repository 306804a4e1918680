"""Corporate actions from the source to the marts: validation, files, raw tables, dbt adjustment factors, adjusted bars.

The worked example is the synthetic market with its planted actions (4 symbols, 10 sessions): a cash dividend
of AAA on 2024-01-09 (1% of the previous close) and a 2-for-1 split of DDD on 2024-01-12. Its raw prices are
the economic (unsplit) market's, restated from each ex-date on, so the adjusted history must give back the
economic market's returns bar for bar.
"""

from __future__ import annotations

import datetime as dt
import math

import duckdb
import polars as pl
import pytest
from dbt.cli.main import dbtRunner

from feature_repo import compute_features, compute_labels
from orchestration.defs.features.assets import _BARS_SQL
from orchestration.defs.market.dbt import DBT_DIR
from orchestration.errors import SourceFileError
from orchestration.market.corporate_actions import (
    conform_actions,
    ingest_actions,
    is_actions_file,
    read_actions_file,
    validate_actions,
)
from orchestration.market.files import FileSource
from orchestration.market.synthetic import SyntheticConfig, SyntheticMarket
from orchestration.market.warehouse import ingest_batch
from orchestration.warehouse import Warehouse

START, END = dt.datetime(2024, 1, 3, tzinfo=dt.UTC), dt.datetime(2024, 1, 17, tzinfo=dt.UTC)
DIVIDEND_EX, SPLIT_EX = dt.date(2024, 1, 9), dt.date(2024, 1, 12)
TEXT = dict.fromkeys(("symbol", "ex_date", "kind", "ratio", "amount"), pl.String)


def _actions(rows: list[tuple]) -> pl.DataFrame:
    return conform_actions(pl.DataFrame(rows, schema=TEXT, orient="row"), source="test")


# --- validation and files ------------------------------------------------------


def test_validate_actions_when_rows_are_malformed_rejects_each_with_its_reason_and_keeps_its_values():
    result = validate_actions(_actions([
        ("AAA", "2024-03-04", "split", "2", None),
        ("aaa", "2024-03-04", "split", "2", None),
        ("BBB", "04/03/2024", "split", "2", None),
        ("CCC", "2024-03-04", "merger", None, None),
        ("DDD", "2024-03-04", "split", "0", None),
        ("EEE", "2024-03-04", "split", "1", None),
        ("FFF", "2024-03-04", "cash_dividend", None, "-0.5"),
        ("GGG", "2024-03-04", "cash_dividend", "2", "abc"),
        ("AAA", "2024-03-04", "forward_split", "2.0", None),
        ("HHH", " ", "split", "2", None),
        ("III", "20240304", "split", "2", None),
    ]))
    assert result.clean.select("symbol", "ratio").rows() == [("AAA", "2")]
    assert result.rejected.select("source_row", "symbol", "reason").rows() == [
        (2, "aaa", "symbol_invalid"),
        (3, "BBB", "ex_date_invalid"),
        (4, "CCC", "kind_unsupported"),
        (5, "DDD", "ratio_not_positive"),
        (6, "EEE", "ratio_is_one"),
        (7, "FFF", "amount_not_positive"),
        (8, "GGG", "amount_not_a_number;ratio_on_dividend"),
        (9, "AAA", "duplicate_key"),
        (10, "HHH", "null:ex_date"),
        (11, "III", "ex_date_invalid"),
    ]
    assert result.rejected.filter(pl.col("symbol") == "GGG")["amount"].item() == "abc"  # kept as received


def test_read_actions_file_when_headers_use_aliases_reads_splits_and_dividends(tmp_path):
    path = tmp_path / "acme_corporate_actions.csv"
    path.write_text("Ticker,Ex Date,Type,Ratio,Amount\nACME,2024-03-04,forward_split,2,\nACME,2024-05-06,cash_dividend,,0.24\n")
    result = validate_actions(read_actions_file(path))
    assert result.rejected.is_empty()
    assert result.clean.select("symbol", "ex_date", "kind", "ratio", "amount", "source", "source_row").rows() == [
        ("ACME", dt.date(2024, 3, 4), "split", "2", None, "csv:acme_corporate_actions.csv", 2),
        ("ACME", dt.date(2024, 5, 6), "cash_dividend", None, "0.24", "csv:acme_corporate_actions.csv", 3),
    ]


def test_read_actions_file_when_the_kind_column_is_missing_names_the_file_and_column(tmp_path):
    path = tmp_path / "corporate_actions.csv"
    path.write_text("symbol,ex_date,ratio\nACME,2024-03-04,2\n")
    with pytest.raises(SourceFileError, match=r"corporate_actions.csv:1: column 'kind': missing column 'kind'"):
        read_actions_file(path)


def test_bar_import_when_an_actions_file_sits_beside_the_bars_reads_only_the_bars(tmp_path):
    (tmp_path / "acme_daily.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-03-04,10,11,9,10.5,100\n")
    (tmp_path / "corporate_actions.csv").write_text("symbol,ex_date,kind,ratio,amount\nACME,2024-03-04,split,2,\n")
    assert is_actions_file(tmp_path / "corporate_actions.csv") and not is_actions_file(tmp_path / "acme_daily.csv")
    assert [f.name for f in FileSource(tmp_path).files()] == ["acme_daily.csv"]


def test_ingest_actions_when_the_same_actions_arrive_twice_appends_them_once_and_quarantines_bad_rows(any_warehouse):
    frame = _actions([("AAA", "2024-03-04", "split", "2", None), ("BBB", "2024-03-04", "split", "-2", None)])
    with any_warehouse.connect() as con:
        first = ingest_actions(con, frame, asset="raw_corporate_actions", label="test")
        again = ingest_actions(con, frame, asset="raw_corporate_actions", label="test")
        assert (first.appended, first.rejected, again.appended) == (1, 1, 0)
        assert con.fetchall("select symbol, cast(ratio as varchar) from raw.corporate_actions") == [("AAA", "2.000000000000")]
        assert con.fetchall("select symbol, reason from raw.corporate_actions_rejected") == [("BBB", "ratio_not_positive")] * 2
        assert con.fetchall("select rows_appended, rows_rejected from raw.corporate_action_batches order by started_at") == [(1, 1), (0, 1)]


def test_synthetic_market_when_corporate_actions_are_off_is_the_default_market():
    plain = SyntheticMarket(SyntheticConfig(n_symbols=4, n_sectors=2)).fetch(START, END, now=END).bars
    planted = SyntheticMarket(SyntheticConfig(n_symbols=4, n_sectors=2, corporate_actions=True)).fetch(START, END, now=END).bars
    default = SyntheticMarket(SyntheticConfig(n_symbols=4, n_sectors=2, corporate_actions=False)).fetch(START, END, now=END).bars
    assert default.equals(plain)
    untouched = ~pl.col("symbol").is_in(["AAA", "DDD"])
    assert planted.filter(untouched).equals(plain.filter(untouched))
    assert not planted.equals(plain)


# --- the marts -----------------------------------------------------------------


@pytest.fixture(scope="module")
def marts(tmp_path_factory):
    """A warehouse with the planted market's raw layer and its dbt marts (one dbt build, ~5 s)."""
    tmp = tmp_path_factory.mktemp("corporate_actions")
    path = tmp / "warehouse.duckdb"
    market = SyntheticMarket(SyntheticConfig(n_symbols=4, n_sectors=2, corporate_actions=True))
    with Warehouse(path).connect() as con:
        ingest_batch(con, market.fetch(START, END, now=END), asset="raw_bars")
        ingest_actions(con, market.corporate_actions(START.date(), END.date()), asset="raw_corporate_actions", label="synthetic")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALPHALINE_WAREHOUSE", str(path))
        mp.setenv("ALPHALINE_DBT_TARGET", "local")
        mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        result = dbtRunner().invoke(["build", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR), "--target-path",
                                     str(tmp / "target"), "--log-path", str(tmp / "logs"), "--quiet"])
    assert result.success, [(r.node.name, r.message) for r in result.result or [] if r.status not in ("pass", "success")]
    conn = duckdb.connect(str(path))  # dbt-duckdb keeps the file open in this process: same configuration
    conn.execute("set TimeZone = 'UTC'")
    yield conn
    conn.close()


def _economic(symbol: str) -> pl.DataFrame:
    """The unsplit market's bars of ``symbol``: what the adjusted history must reproduce."""
    bars = SyntheticMarket(SyntheticConfig(n_symbols=4, n_sectors=2)).fetch(START, END, now=END).bars
    return bars.filter(pl.col("symbol") == symbol).sort("ts").select("ts", pl.col("close").alias("economic"))


def test_adjustment_factors_when_a_2_for_1_split_and_a_dividend_happen_restate_only_the_sessions_before(marts):
    factors = marts.execute("select symbol, session, split_factor, dividend_factor, price_factor from marts.adjustment_factors "
                            "where symbol in ('AAA', 'DDD') and session between '2024-01-03' and '2024-01-16'").pl()
    ddd = factors.filter(pl.col("symbol") == "DDD")
    assert set(ddd.filter(pl.col("session") < SPLIT_EX)["price_factor"]) == {0.5}
    assert set(ddd.filter(pl.col("session") >= SPLIT_EX)["price_factor"]) == {1.0}
    (amount, close_before), = marts.execute(
        "select amount::double, close_before_ex from marts.corporate_actions where kind = 'cash_dividend'").fetchall()
    aaa = factors.filter(pl.col("symbol") == "AAA")
    assert aaa.filter(pl.col("session") < DIVIDEND_EX)["dividend_factor"].to_list() == pytest.approx(
        [1 - amount / close_before] * 4, abs=1e-15)
    assert set(aaa.filter(pl.col("session") >= DIVIDEND_EX)["price_factor"]) == {1.0}
    assert 0 < 1 - amount / close_before < 1 and set(aaa["split_factor"]) == {1.0}


def test_marts_bars_when_a_2_for_1_split_happens_adjusted_returns_are_the_economic_ones_and_raw_are_not(marts):
    bars = marts.execute("select ts, close, adj_close, volume, adj_volume from marts.bars where symbol = 'DDD' "
                         "and timeframe = '15m' order by ts").pl().with_columns(pl.col("ts").dt.convert_time_zone("UTC"))
    both = bars.join(_economic("DDD"), on="ts")
    first = both.filter(pl.col("ts").dt.convert_time_zone("America/New_York").dt.date() == SPLIT_EX)["ts"].min()
    at = both.with_row_index().filter(pl.col("ts") == first)["index"].item()
    raw_ret = math.log(both["close"][at] / both["close"][at - 1])
    adj_ret = math.log(both["adj_close"][at] / both["adj_close"][at - 1])
    economic_ret = math.log(both["economic"][at] / both["economic"][at - 1])
    assert raw_ret == pytest.approx(math.log(0.5) + economic_ret, abs=1e-4)  # the fake -50% in the raw prices
    assert adj_ret == pytest.approx(economic_ret, abs=1e-5) and abs(adj_ret) < 0.05
    before = both.filter(pl.col("ts") < first)
    assert (before["adj_volume"] == before["volume"] * 2).all()


def test_features_and_labels_when_a_split_and_a_dividend_happen_match_the_economic_market(marts):
    bars = marts.execute(_BARS_SQL, ["15m", dt.date(1900, 1, 1)]).pl()
    bars = bars.with_columns(pl.col(c).dt.convert_time_zone("UTC") for c, t in bars.schema.items() if isinstance(t, pl.Datetime))
    features = compute_features(bars, bar_length=dt.timedelta(minutes=15))
    labels = compute_labels(bars)
    for symbol in ("DDD", "AAA"):
        economic = _economic(symbol).with_columns(
            (pl.col("economic") / pl.col("economic").shift(1)).log().alias("ret_1"),
            (pl.col("economic").shift(-1) / pl.col("economic")).log().alias("fwd_1"),
            (pl.col("ts") + dt.timedelta(minutes=15)).alias("event_timestamp"))
        got = (features.filter(pl.col("symbol") == symbol).select("event_timestamp", "ret_log_1")
               .join(labels.filter(pl.col("symbol") == symbol).select("event_timestamp", "label_fwd_ret_1"), on="event_timestamp")
               .join(economic, on="event_timestamp").drop_nulls())
        assert got.height > 200
        assert (got["ret_log_1"] - got["ret_1"]).abs().max() < 1e-4, symbol
        assert (got["label_fwd_ret_1"] - got["fwd_1"]).abs().max() < 1e-4, symbol
        assert got["ret_log_1"].abs().max() < 0.1 and got["label_fwd_ret_1"].abs().max() < 0.1  # no -0.69 anywhere
