"""One open connection to the warehouse, the same surface on DuckDB and on PostgreSQL.

SQL passed in is the subset both engines read alike, with ``?`` placeholders; a frame is written by
:meth:`Session.insert` (the statement reads it as the relation ``_frame``) or :meth:`Session.append`
(columns matched by name). DuckDB scans the frame in place (Arrow); PostgreSQL receives it with ``COPY``
into a temporary table. Frames come back as polars with time stamps in ``UTC``.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import polars as pl

from trader.warehouse import fetch, pyformat, table_exists


class Session(ABC):
    """A connection to the warehouse (from :meth:`orchestration.warehouse.Warehouse.connect`)."""

    kind: str

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run ``sql`` (several statements when there are no ``params``)."""

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return fetch(self.raw, sql, params)

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.fetchone(sql, params)
        return None if row is None else row[0]

    @abstractmethod
    def read(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """The result of ``sql`` as a polars frame (time stamps with time zone in ``UTC``)."""

    @abstractmethod
    def insert(self, frame: pl.DataFrame, sql: str, params: Sequence[Any] = ()) -> None:
        """Run ``sql``, which reads ``frame`` as the relation ``_frame`` (e.g. ``insert into t select ... from _frame``)."""

    def append(self, table: str, frame: pl.DataFrame, *, on_conflict_ignore: bool = False) -> None:
        """Insert the rows of ``frame`` into ``table``, its columns by name (``on_conflict_ignore``: skip existing keys)."""
        if frame.is_empty():
            return
        cols = ", ".join(frame.columns)
        tail = " on conflict do nothing" if on_conflict_ignore else ""
        self.insert(frame, f"insert into {table} ({cols}) select {cols} from _frame{tail}")

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """Everything in the block commits together, or nothing does."""
        yield

    def table_exists(self, schema: str, table: str) -> bool:
        return table_exists(self.raw, schema, table)


def _utc(frame: pl.DataFrame) -> pl.DataFrame:
    zoned = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone not in (None, "UTC")]
    return frame.with_columns(pl.col(zoned).dt.convert_time_zone("UTC")) if zoned else frame


class DuckDBSession(Session):
    kind = "duckdb"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.raw.execute(sql, list(params)) if params else self.raw.execute(sql)

    def read(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        # DuckDB hands back "Etc/UTC"; polars only compares time stamps of the identical zone.
        return _utc(self.raw.execute(sql, list(params)).pl())

    def insert(self, frame: pl.DataFrame, sql: str, params: Sequence[Any] = ()) -> None:
        self.raw.register("_frame", frame)  # explicit, not a scan of Python variable names
        try:
            self.execute(sql, params)
        finally:
            self.raw.unregister("_frame")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.raw.execute("begin transaction")
        try:
            yield
        except BaseException:
            self.raw.execute("rollback")
            raise
        self.raw.execute("commit")


#: PostgreSQL type of a polars column in the temporary table a frame is copied into.
_PG_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "text", pl.Float64: "double precision", pl.Float32: "double precision", pl.Int64: "bigint",
    pl.Int32: "integer", pl.Int16: "integer", pl.Int8: "integer", pl.UInt32: "bigint", pl.UInt16: "integer",
    pl.UInt8: "integer", pl.Boolean: "boolean", pl.Date: "date", pl.Null: "text", pl.Decimal: "numeric",
}
_STRING_OIDS = {18, 19, 25, 114, 1042, 1043, 3802}


def _pg_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    try:
        return _PG_TYPES[dtype.base_type()]
    except KeyError:
        raise TypeError(f"no PostgreSQL column type for a polars {dtype} column") from None


def _polars_type(column: Any) -> pl.DataType | None:
    """The polars type of a result column from its PostgreSQL type (``None``: let polars infer)."""
    oid = column.type_code
    if oid in _STRING_OIDS:
        return pl.String()
    simple = {16: pl.Boolean(), 20: pl.Int64(), 21: pl.Int32(), 23: pl.Int32(), 700: pl.Float64(), 701: pl.Float64(),
              1082: pl.Date(), 1114: pl.Datetime("us"), 1184: pl.Datetime("us", "UTC")}
    if oid in simple:
        return simple[oid]
    if oid == 1700 and column.precision is not None:
        return pl.Decimal(column.precision, column.scale or 0)
    return None


def _epoch_us(zone: str | None) -> Any:
    return lambda col: pl.from_epoch(col, time_unit="us").dt.replace_time_zone(zone)


#: Result column types :meth:`PostgresSession.read` copies as CSV: oid -> (SQL around the column, its CSV type in polars,
#: the cast to the frame's type). Text comes as text (CSV quotes it: a NULL is an empty field, '' a quoted one).
_COPY_AS: dict[int, tuple[str, type[pl.DataType] | pl.DataType, Any]] = {
    **{oid: ("{}", pl.String, lambda col: col) for oid in _STRING_OIDS},
    16: ("{}::int", pl.Int8, lambda col: col.cast(pl.Boolean)),
    20: ("{}", pl.Int64, lambda col: col),
    21: ("{}", pl.Int32, lambda col: col),
    23: ("{}", pl.Int32, lambda col: col),
    700: ("{}", pl.Float64, lambda col: col),  # its own shortest text, as psycopg reads it
    701: ("{}", pl.Float64, lambda col: col),
    1082: ("({} - date '1970-01-01')", pl.Int32, lambda col: col.cast(pl.Date)),
    1114: ("(extract(epoch from {}) * 1000000)::bigint", pl.Int64, _epoch_us(None)),
    1184: ("(extract(epoch from {}) * 1000000)::bigint", pl.Int64, _epoch_us("UTC")),
}


class PostgresSession(Session):
    kind = "postgres"

    def __init__(self, raw: Any) -> None:
        super().__init__(raw)
        from psycopg.types.string import TextLoader

        for name in ("json", "jsonb"):  # as text, as DuckDB returns it
            raw.adapters.register_loader(name, TextLoader)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.raw.execute(pyformat(sql), list(params)) if params else self.raw.execute(sql)

    def read(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """Through ``COPY ... TO STDOUT`` (CSV, parsed by polars) when every result column has a type it carries exactly;
        otherwise row by row. A frame of rows is ~10× slower: each value becomes a Python object first."""
        query = pyformat(sql) if params else sql
        with self.raw.cursor() as cur:
            cur.execute(f"select * from ({query}) as _q limit 0", list(params) or None)
            columns = cur.description
        names = [c.name for c in columns]
        if len(set(names)) == len(names) and all(c.type_code in _COPY_AS for c in columns):
            return self._copy_read(query, params, columns)
        with self.raw.cursor() as cur:
            cur.execute(query, list(params) or None)
            schema = {c.name: _polars_type(c) for c in cur.description}
            rows = cur.fetchall()
        known = {k: v for k, v in schema.items() if v is not None}
        frame = pl.DataFrame(rows, schema=list(schema), orient="row", infer_schema_length=None, strict=False)
        return frame.with_columns(pl.col(k).cast(v) for k, v in known.items() if frame.schema[k] != v)

    def _copy_read(self, query: str, params: Sequence[Any], columns: Sequence[Any]) -> pl.DataFrame:
        """Times travel as integer microseconds since the epoch, dates as days, booleans as 0/1, the rest as PostgreSQL
        writes it (a double as its shortest exact text), so the frame equals the row-by-row one value for value."""
        from psycopg import ClientCursor

        literal = ClientCursor(self.raw).mogrify(query, list(params)) if params else query
        exprs = ", ".join(_COPY_AS[c.type_code][0].format(f'"{c.name.replace(chr(34), chr(34) * 2)}"') for c in columns)
        buf = bytearray()
        with self.raw.cursor() as cur, cur.copy(f"copy (select {exprs} from ({literal}) as _q) to stdout (format csv)") as copy:
            for chunk in copy:
                buf += chunk
        wire = {c.name: _COPY_AS[c.type_code][1] for c in columns}
        if not buf:
            frame = pl.DataFrame(schema=wire)
        else:
            frame = pl.read_csv(bytes(buf), has_header=False, new_columns=list(wire), schema=wire)
        return frame.with_columns(_COPY_AS[c.type_code][2](pl.col(c.name)) for c in columns)

    def insert(self, frame: pl.DataFrame, sql: str, params: Sequence[Any] = ()) -> None:
        columns = ", ".join(f'"{c}" {_pg_type(t)}' for c, t in frame.schema.items())
        self.raw.execute(f"create temporary table _frame ({columns})")
        try:
            buf = io.BytesIO()
            frame.write_csv(buf, include_header=False, null_value="\\N", quote_style="non_numeric")
            with self.raw.cursor() as cur, cur.copy("copy _frame from stdin (format csv, null '\\N')") as copy:
                copy.write(buf.getvalue())
            self.execute(sql, params)
        finally:
            self.raw.execute("drop table if exists _frame")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.raw.transaction():
            yield
