import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from orchestration.errors import SourceFileError
from orchestration.market.files import FileSource, symbol_from_filename
from orchestration.market.validation import validate_bars
from tests.conftest import real_csv, utc


@pytest.mark.parametrize(("name", "symbol"), [("sp500_daily.csv", "SP500"), ("nasdaq_daily.csv", "NASDAQ")])
def test_file_source_imports_real_daily_file_with_no_manual_editing(name: str, symbol: str, tmp_path: Path):
    batch = FileSource(real_csv(name, tmp_path)).read()
    bars = batch.bars
    assert bars.height == 5031
    assert bars["symbol"].unique().to_list() == [symbol]
    assert bars["timeframe"].unique().to_list() == ["1d"]
    assert batch.label == f"csv:{name}"
    # stamped at the session open: 09:30 New York, whatever the season
    assert bars["ts"][0] == utc(1999, 1, 4, 14, 30)
    assert bars.filter(pl.col("ts").dt.date() == utc(2018, 7, 2).date())["ts"][0] == utc(2018, 7, 2, 13, 30)
    assert bars["volume"].max() > 2**31  # index volume does not fit 32 bits
    result = validate_bars(bars)
    assert result.rejected.height == 0 and result.gaps.height == 0


def test_file_source_reads_iso_times_with_offsets_and_a_symbol_column(tmp_path: Path):
    f = tmp_path / "mixed.csv"
    f.write_text(
        "Timestamp,Ticker,O,H,L,C,Vol,VWAP,Trades\n"
        "2024-01-02T14:30:00Z,AAA,10,11,9,10.5,100,10.2,7\n"
        "2024-01-02T09:45:00-05:00,AAA,10.5,11,10,10.8,80,10.6,5\n"
        "2024-01-02T14:30:00Z,BBB,20,21,19,20.5,100,20.1,9\n"
    )
    bars = FileSource(f).read().bars
    assert bars["symbol"].to_list() == ["AAA", "AAA", "BBB"]
    assert bars["ts"].to_list() == [utc(2024, 1, 2, 14, 30), utc(2024, 1, 2, 14, 45), utc(2024, 1, 2, 14, 30)]
    assert bars["timeframe"].unique().to_list() == ["15m"]
    assert bars["trade_count"].to_list() == [7, 5, 9]


def test_file_source_applies_the_stated_zone_to_naive_times(tmp_path: Path):
    f = tmp_path / "msft_15m.csv"
    f.write_text("Datetime,Open,High,Low,Close,Volume\n7/1/2024 09:30,1,2,0.5,1.5,10\n7/1/2024 09:45,1,2,0.5,1.5,10\n")
    bars = FileSource(f, tz="America/New_York").read().bars
    assert bars["ts"].to_list() == [utc(2024, 7, 1, 13, 30), utc(2024, 7, 1, 13, 45)]
    assert bars["symbol"][0] == "MSFT"


def test_file_source_reads_a_folder_of_csv_and_parquet(tmp_path: Path):
    (tmp_path / "aaa.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,0.5,1.5,10\n")
    pl.DataFrame({"date": ["2024-01-03"], "open": [1.0], "high": [2.0], "low": [0.5], "close": [1.5], "volume": [10.0]}).write_parquet(tmp_path / "bbb.parquet")
    bars = FileSource(tmp_path).read().bars
    assert sorted(bars["symbol"].to_list()) == ["AAA", "BBB"]
    assert sorted(bars["source"].to_list()) == ["csv:aaa.csv", "parquet:bbb.parquet"]


@pytest.mark.parametrize(
    ("content", "line", "column", "reason"),
    [
        ("Date,Open,High,Low,Volume\n1/4/1999,1,2,0.5,10\n", 1, "close", "missing column 'close'"),
        ("Date,Open,High,Low,Close,Volume\n1/4/1999,1,2,0.5,1.5,10\n1/32/1999,1,2,0.5,1.5,10\n", 3, "Date", "unparseable date '1/32/1999'"),
        ("Date,Open,High,Low,Close,Volume\n1/4/1999,1,2,0.5,1.5,10\n1/5/1999,1,2,abc,1.5,10\n", 3, "Low", "not a number: 'abc'"),
        ("Datetime,Open,High,Low,Close,Volume\n2024-01-02 09:30,1,2,0.5,1.5,10\n", 2, "Datetime", "no zone"),
    ],
    ids=["missing-column", "bad-date", "text-in-price", "naive-time"],
)
def test_file_source_when_file_is_malformed_names_file_line_and_column(tmp_path: Path, content, line, column, reason):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(SourceFileError) as err:
        FileSource(f).read()
    message = str(err.value)
    assert message.startswith(f"{f}:{line}: column '{column}'")
    assert reason in message
    assert "\n" not in message


def test_symbol_from_filename_takes_the_stem_before_the_first_underscore():
    assert symbol_from_filename(Path("sp500_daily.csv")) == "SP500"
    assert symbol_from_filename(Path("brk.b.csv")) == "BRK.B"
    assert symbol_from_filename(Path("aapl_15m.parquet")) == "AAPL"


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    code = "from orchestration.cli import run; run()"
    env = {"ALPHALINE_HOME": str(home), "PATH": str(Path(sys.executable).parent), "HOME": str(home)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("content", ["Date,Open,High,Low,Close,Volume\n1/4/1999,1,2,0.5,1.5,10\n1/5/1999,1,2,abc,1.5,10\n"])
def test_cli_ingest_when_csv_is_malformed_prints_one_line_and_exits_nonzero(tmp_path: Path, content: str):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    proc = _cli("ingest", "--csv", str(f), home=tmp_path / "home")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {f}:3: column 'Low': not a number: 'abc'"
    assert "Traceback" not in proc.stdout + proc.stderr


def test_cli_ingest_when_no_source_chosen_says_what_to_choose(tmp_path: Path):
    proc = _cli("ingest", home=tmp_path / "home")
    assert proc.returncode == 2
    assert "choose exactly one of --csv PATH, --synthetic, --alpaca" in proc.stderr
    assert "Traceback" not in proc.stderr
