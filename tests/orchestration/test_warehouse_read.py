"""Reading a frame from the PostgreSQL warehouse through COPY gives exactly the frame the row-by-row read gives, and the
frame DuckDB gives for the same rows."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from orchestration.warehouse import Warehouse

pytestmark = pytest.mark.servers

COLUMNS = "s, b, i, n, f, r, d, ts, naive"
#: Text that CSV must carry intact (NULL vs '', quotes, separators, new lines, non-ASCII) and numbers at their edges.
ROWS = """
insert into t values
  ('plain', true, 1, 9007199254740993, 0.1, 0.1, date '2024-02-29', timestamptz '2024-03-04 14:45:00.123456+00',
   timestamp '2024-03-04 09:30:00'),
  ('', false, -2147483648, -1, 1e-300, 3.4e38, date '1969-12-31', timestamptz '1969-12-31 23:59:59.999999+00',
   timestamp '1900-01-01 00:00:00.000001'),
  (null, null, null, null, null, null, null, null, null),
  ('a "quoted", comma
and a new line é ü 日本', true, 2147483647, 0, 'NaN', 'Infinity', date '2099-12-31',
   timestamptz '2024-03-10 07:00:00+05:30', timestamp '2024-03-10 02:30:00'),
  ('\\N', false, 0, 42, '-Infinity', -0.0, date '2000-01-01', timestamptz '2000-01-01 00:00:00+00',
   timestamp '2000-01-01 00:00:00'),
  ('x', true, 7, 7, 123456789.12345678, 1.17549435e-38, date '1970-01-01', timestamptz '1970-01-01 00:00:00+00',
   timestamp '1970-01-01 00:00:00')
"""
CREATE = ("create table t (s text, b boolean, i integer, n bigint, f double precision, r real, d date, ts timestamptz, "
          "naive timestamp)")


@pytest.fixture
def server(postgres_url: str) -> Warehouse:
    warehouse = Warehouse(postgres_url)
    with warehouse.connect() as con:
        con.execute("drop table if exists t")
        con.execute(CREATE)
        con.execute(ROWS)
    return warehouse


def test_a_copied_frame_equals_the_row_by_row_frame_value_for_value(server):
    with server.connect(read_only=True) as con:
        copied = con.read(f"select {COLUMNS} from t order by i nulls last")
        # A uuid column has no exact CSV form here: this read goes row by row; the rest must be identical.
        rows = con.read(f"select {COLUMNS}, gen_random_uuid() as u from t order by i nulls last").drop("u")
    assert_frame_equal(copied, rows)
    assert copied.schema == pl.Schema({"s": pl.String, "b": pl.Boolean, "i": pl.Int32, "n": pl.Int64, "f": pl.Float64,
                                       "r": pl.Float64, "d": pl.Date, "ts": pl.Datetime("us", "UTC"),
                                       "naive": pl.Datetime("us")})
    texts = copied["s"].to_list()
    assert texts.count(None) == 1 and "" in texts and "\\N" in texts
    assert copied.filter(pl.col("i") == 2147483647)["ts"].item() == dt.datetime(2024, 3, 10, 1, 30, tzinfo=dt.UTC)


def test_parameters_are_bound_and_an_empty_result_keeps_its_types(server):
    with server.connect(read_only=True) as con:
        some = con.read("select s, ts from t where i > ? and s <> ? order by i", [0, "x"])
        none = con.read("select s, b, d, ts from t where i > ?", [2**31 - 1])
    assert some["s"].to_list() == ["plain", 'a "quoted", comma\nand a new line é ü 日本']
    assert none.is_empty()
    assert none.schema == pl.Schema({"s": pl.String, "b": pl.Boolean, "d": pl.Date, "ts": pl.Datetime("us", "UTC")})


def test_postgres_and_duckdb_read_the_same_rows_alike(server, tmp_path):
    local = Warehouse(tmp_path / "warehouse.duckdb")
    with local.connect() as con:
        con.execute(CREATE.replace("double precision", "double").replace("real", "float"))
        con.execute(ROWS.replace("'NaN'", "'NaN'::double").replace("\\\\N", "\\N"))
    query = "select s, b, n, f, d, ts from t order by n nulls last"
    assert_frame_equal(server.read(query), local.read(query).with_columns(pl.col("ts").dt.cast_time_unit("us")))
