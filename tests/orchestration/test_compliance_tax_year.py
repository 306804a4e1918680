"""`alphaline compliance mtm-analysis | reconcile-1099b | short-sales` on a tiny trader store (no Dagster run)."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from orchestration.cli.compliance import compliance
from orchestration.settings import Settings, prepare_environment
from trader.domain import Fill
from trader.store import TraderStore

FILLS = [  # fill_id, day, symbol, side, qty, price — the worked year of trader/compliance/mtm.py
    ("F1", dt.date(2024, 3, 4), "XYZ", "buy", "100", "50"), ("F2", dt.date(2024, 3, 18), "XYZ", "sell", "100", "40"),
    ("F3", dt.date(2024, 3, 20), "XYZ", "buy", "100", "42"), ("F4", dt.date(2024, 5, 1), "ABC", "buy", "100", "100"),
    ("F5", dt.date(2024, 6, 3), "ABC", "sell", "100", "50"),
]
EXACT_1099B = ["Description,Date Acquired,Date Sold,Proceeds,Cost Basis,Wash Sale Loss Disallowed,Term",
               "100 sh XYZ,03/04/2024,03/18/2024,4000.00,5000.00,1000.00,Short",
               "100 sh ABC,05/01/2024,06/03/2024,5000.00,10000.00,,Short"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ALPHALINE_HOME", str(tmp_path / "home"))
    for var in ("DAGSTER_HOME", "DBT_TARGET_PATH", "DBT_LOG_PATH", "ALPHALINE_WAREHOUSE"):
        monkeypatch.delenv(var, raising=False)
    settings = prepare_environment(Settings(home=tmp_path / "home"))
    with TraderStore(f"sqlite:///{settings.home / 'trader' / 'sim.db'}") as store:
        for fid, day, symbol, side, qty, price in FILLS:
            fill = Fill(fill_id=fid, order_id=f"O-{fid}", client_order_id=f"C-{fid}", symbol=symbol, side=side,
                        qty=Decimal(qty), price=Decimal(price), fee=Decimal(0),
                        ts=dt.datetime.combine(day, dt.time(15), tzinfo=dt.UTC), venue="sim", account="A1")
            with store.transaction() as tx:
                tx.record_fill(fill)
    return settings


def reconcile(tmp_path: Path, *lines: str):
    path = tmp_path / "broker.csv"
    path.write_text("\n".join(lines) + "\n")
    return CliRunner().invoke(compliance, ["reconcile-1099b", str(path), "--year", "2024", "--trader", "sim"])


def test_reconcile_1099b_exact_match_exits_0_and_writes_the_years_report(home, tmp_path):
    result = reconcile(tmp_path, *EXACT_1099B)
    assert result.exit_code == 0, result.output
    assert "2 match(es), 0 mismatch(es), 0 only in ours, 0 only on the 1099-B" in result.output
    assert (home.reports_dir / "2024" / "reconcile_1099b.csv").read_text().count("\nmatch,") == 2


def test_reconcile_1099b_changed_proceeds_exits_1_naming_the_field_and_both_values(home, tmp_path):
    result = reconcile(tmp_path, EXACT_1099B[0], EXACT_1099B[1].replace("4000.00", "4100.00"), EXACT_1099B[2])
    assert result.exit_code == 1
    assert "proceeds: ours 4000.00, 1099-B 4100.00" in result.output
    report = (home.reports_dir / "2024" / "reconcile_1099b.csv").read_text()
    assert "mismatch,XYZ,100,2024-03-04,2024-03-18,proceeds,4000.00,4100.00" in report


def test_reconcile_1099b_row_missing_from_the_1099b_exits_1(home, tmp_path):
    result = reconcile(tmp_path, EXACT_1099B[0], EXACT_1099B[1])
    assert result.exit_code == 1 and "ABC 100 sold 2024-06-03" in result.output and "not on the 1099-B" in result.output


def test_reconcile_1099b_malformed_csv_is_one_line_naming_file_row_and_field(home, tmp_path):
    result = reconcile(tmp_path, EXACT_1099B[0], EXACT_1099B[1].replace("5000.00", "five thousand"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line == f"error: {tmp_path / 'broker.csv'}: row 2: cost_basis: not an amount ('five thousand')"


def test_mtm_analysis_cli_prints_and_writes_both_regimes_with_provided_marks(home, tmp_path):
    marks = tmp_path / "marks.csv"
    marks.write_text("symbol,price\nXYZ,45\n")
    result = CliRunner().invoke(compliance, ["mtm-analysis", "--year", "2024", "--trader", "sim", "--marks", str(marks)])
    assert result.exit_code == 0, result.output
    assert "difference (mark-to-market − default) in this year's income: -2,700.00" in result.output
    lines = (home.reports_dir / "2024" / "mtm_analysis.csv").read_text().splitlines()
    assert "net amount in this year's income,-3000.00,-5700.00,-2700.00" in lines
    assert (home.reports_dir / "2024" / "mtm_analysis.md").exists()


def test_mtm_analysis_cli_reads_year_end_marks_from_the_warehouse_and_names_a_missing_price(home):
    con = duckdb.connect(str(home.warehouse_path))
    con.execute("create schema marts; create table marts.bars (symbol varchar, timeframe varchar, ts timestamptz, "
                "close_ts timestamptz, session date, close double)")
    bar = "insert into marts.bars values (?, '15m', '2024-12-31 20:45:00+00', '2024-12-31 21:00:00+00', '2024-12-31', ?)"
    con.execute(bar, ["ABC", 60.0])
    con.close()
    missing = CliRunner().invoke(compliance, ["mtm-analysis", "--year", "2024", "--trader", "sim"])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert missing.output.strip() == "error: year-end marks (2024): XYZ: no price for an open position"
    with duckdb.connect(str(home.warehouse_path)) as con:
        con.execute(bar, ["XYZ", 45.0])
    ok = CliRunner().invoke(compliance, ["mtm-analysis", "--year", "2024", "--trader", "sim"])
    assert ok.exit_code == 0, ok.output
    assert "difference (mark-to-market − default) in this year's income: -2,700.00" in ok.output
    no_file = CliRunner().invoke(compliance, ["mtm-analysis", "--year", "2024", "--trader", "sim", "--marks", "/nonexistent.csv"])
    assert no_file.exit_code == 2 and no_file.output.strip().startswith("error: /nonexistent.csv: cannot read")


def test_short_sales_cli_flags_a_short_against_the_box_in_another_account_with_the_gain_recognised(home):
    short = Fill(fill_id="F6", order_id="O-F6", client_order_id="C-F6", symbol="XYZ", side="sell", qty=Decimal(50),
                 price=Decimal(60), fee=Decimal(0), ts=dt.datetime(2024, 7, 1, 15, tzinfo=dt.UTC), venue="sim", account="A2")
    with TraderStore(f"sqlite:///{home.home / 'trader' / 'sim.db'}") as store, store.transaction() as tx:
        tx.record_fill(short)
    result = CliRunner().invoke(compliance, ["short-sales", "--year", "2024", "--trader", "sim"])
    assert result.exit_code == 0, result.output
    # A1's 100 XYZ carry basis 5,200 (4,200 + the 1,000 wash sale): 50 of them at 60 = 3,000 − 2,600 = 400 gain.
    assert "short 50 in A2 vs 50 held in A1 (short-term, gain 400.00): §1259 constructive sale; §1233(b)" in result.output
    rows = (home.reports_dir / "2024" / "short_sale_flags.csv").read_text().splitlines()
    assert rows[1].endswith(",3000.00,400.00") and len(rows) == 2
