"""Ledger checkpoints: resuming from yesterday's state gives exactly what replaying all history gives."""

from __future__ import annotations

import datetime as dt
import doctest
import tempfile
from decimal import Decimal as D
from pathlib import Path

import orjson
import pytest
from compliance_factories import FORMAT1_DAY, FORMAT1_MARKS, FORMAT1_NEXT_DAY, fill, format1_history
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trader.compliance.checkpoint as checkpoint
from trader.compliance import ComplianceError, LedgerError, close_day, write_reports
from trader.compliance.checkpoint import dumps_day_close, loads, pruned_day_close, restore_day_close, restore_ledger

MARKS = {"XYZ": D("9.50"), "ABC": D("20")}
DATA = Path(__file__).parent / "data"


def report_bytes(close, directory: Path) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in write_reports(close, directory).paths.items()}


def closes(fills, *, allow_short=False):
    """Each trade day closed twice: by a full replay, and resumed from the previous day's checkpoint bytes."""
    days = sorted({f.trade_date for f in fills})
    previous = None
    for day in days:
        full = close_day(fills, day=day, closing_marks=MARKS, opening_marks=MARKS, allow_short=allow_short)
        todays = [f for f in fills if f.trade_date == day]
        resume = None if previous is None else restore_ledger(loads(previous)["ledger"])
        resumed = close_day(todays, day=day, closing_marks=MARKS, opening_marks=MARKS, allow_short=allow_short, resume=resume)
        previous = dumps_day_close(resumed)
        yield full, resumed, previous


@st.composite
def histories(draw, *, shorts: bool = False):
    """Random fills over ~5 months across a year end, so pruning and late wash sales are exercised.

    Long-only histories never sell more than held; with ``shorts`` any sell may open a short lot.
    """
    held = {("XYZ", "A1"): D(0), ("XYZ", "A2"): D(0), ("ABC", "A1"): D(0)}
    fills, day = [], dt.date(2023, 11, 20)
    for i in range(draw(st.integers(2, 18))):
        day += dt.timedelta(days=draw(st.sampled_from([0, 1, 5, 12, 31])))
        symbol, account = draw(st.sampled_from(sorted(held)))
        side, qty = draw(st.sampled_from(["buy", "sell"])), D(draw(st.integers(1, 40)))
        if side == "sell" and not shorts:
            if held[symbol, account] <= 0:
                side = "buy"
            qty = min(qty, held[symbol, account]) if side == "sell" else qty
        held[symbol, account] += qty if side == "buy" else -qty
        price = str(D(draw(st.integers(500, 1500))) / 100)
        fills.append(fill(side, day, str(qty), price, fee=str(D(draw(st.integers(0, 99))) / 100), symbol=symbol,
                          account=account, fid=f"F{i:03d}", minute=i))
    return fills


@given(data=st.data(), shorts=st.booleans())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_resuming_from_each_days_checkpoint_matches_a_full_replay_byte_for_byte(data, shorts):
    fills = data.draw(histories(shorts=shorts))
    for full, resumed, state in closes(fills, allow_short=shorts):
        assert dumps_day_close(full) == state
        assert resumed.roll_forward == full.roll_forward


@given(data=st.data(), shorts=st.booleans())
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_pruned_day_close_is_what_reading_the_checkpoint_back_gives(data, shorts):
    fills = data.draw(histories(shorts=shorts))
    for full, _, state in closes(fills, allow_short=shorts):
        pruned = pruned_day_close(full)
        assert dumps_day_close(pruned) == state
        restored = restore_day_close(loads(state))
        pending = [d.disposal_id for d in restored.ledger.pending_losses(full.day)]
        assert [d.disposal_id for d in pruned.ledger.pending_losses(full.day)] == pending


def test_reports_written_from_a_restored_day_close_are_identical(tmp_path: Path):
    fills = [fill("buy", "2013-01-01", "100", "10"), fill("sell", "2013-06-01", "100", "7.50"),
             fill("buy", "2013-06-14", "100", "8"), fill("sell", "2013-06-14", "30", "8.25", fee="1")]
    for full, _, state in closes(fills):
        a = write_reports(full, tmp_path / "a" / full.day.isoformat())
        b = write_reports(restore_day_close(loads(state)), tmp_path / "b" / full.day.isoformat())
        c = write_reports(pruned_day_close(full), tmp_path / "c" / full.day.isoformat())
        assert {n: p.read_bytes() for n, p in a.paths.items()} == {n: p.read_bytes() for n, p in b.paths.items()}
        assert {n: p.read_bytes() for n, p in c.paths.items()} == {n: p.read_bytes() for n, p in b.paths.items()}


@given(data=st.data(), shorts=st.booleans())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_resumed_days_reports_equal_a_replayed_days_byte_for_byte(data, shorts):
    fills = data.draw(histories(shorts=shorts))
    with tempfile.TemporaryDirectory() as tmp:
        for full, resumed, _ in closes(fills, allow_short=shorts):
            day = full.day.isoformat()
            assert report_bytes(resumed, Path(tmp) / "resumed" / day) == report_bytes(full, Path(tmp) / "replayed" / day)


def format1_closes() -> tuple[dict, D, object, object]:
    """The layout-1 checkpoint file, the marks, and the next session closed by a resume from it and by a full replay."""
    history, next_day = format1_history()
    marks = {symbol: D(price) for symbol, price in FORMAT1_MARKS.items()}
    state = loads((DATA / "checkpoint_format1.json").read_bytes())
    resumed = close_day(next_day, day=FORMAT1_NEXT_DAY, closing_marks=marks, opening_marks=marks,
                        resume=restore_ledger(state["ledger"]))
    full = close_day(history + next_day, day=FORMAT1_NEXT_DAY, closing_marks=marks, opening_marks=marks, allow_short=True)
    return state, marks, resumed, full


def test_a_layout_1_checkpoint_still_resumes_and_the_next_day_matches_a_full_replay(tmp_path: Path):
    state, marks, resumed, full = format1_closes()
    assert state["format"] == 1 and "sealed" not in state["ledger"]  # the archived layout, as the old code wrote it
    assert dumps_day_close(resumed) == dumps_day_close(full) and loads(dumps_day_close(resumed))["format"] == checkpoint.FORMAT
    assert report_bytes(resumed, tmp_path / "resumed") == report_bytes(full, tmp_path / "replayed")
    # The archived day itself, read back from layout 1, still prints what replaying it prints.
    history, _ = format1_history()
    replayed = close_day(history, day=FORMAT1_DAY, closing_marks=marks, opening_marks=marks, allow_short=True)
    assert report_bytes(restore_day_close(state), tmp_path / "old") == report_bytes(replayed, tmp_path / "old-replayed")


def sealed_ids(ledger_state: dict) -> list[str]:
    return [key[len("1YYYY-MM-DD"):] for key in ledger_state["sealed"]["keys"]]  # Part digit + ISO date sold + id


def test_a_resumed_ledger_keeps_final_disposals_as_sealed_text_and_writes_them_back_verbatim():
    history, next_day = format1_history()
    marks = {symbol: D(price) for symbol, price in FORMAT1_MARKS.items()}
    day = loads(dumps_day_close(close_day(history, day=FORMAT1_DAY, closing_marks=marks, opening_marks=marks,
                                          allow_short=True)))["ledger"]
    # Final: a covered short, a loss whose window closed, a gain; the 2023 loss belongs to another tax year.
    assert sealed_ids(day) == ["s2/1", "x5/1", "x6/1"]
    restored = restore_ledger(day)
    assert [d.disposal_id for d in restored.disposals] == ["a2/1", "x7/1"]  # a loss still pending, the day's own sale
    assert len(restored.wash_sales) == 1 and restored.wash_sales[0].booked == FORMAT1_DAY  # earlier ones stay text
    after = close_day(next_day, day=FORMAT1_NEXT_DAY, closing_marks=marks, opening_marks=marks, resume=restored)
    sealed = loads(dumps_day_close(after))["ledger"]["sealed"]
    assert sealed_ids({"sealed": sealed}) == ["s2/1", "x5/1", "x6/1", "x7/1"]  # yesterday's sale is final now
    assert sealed["disposals"][:3] == day["sealed"]["disposals"] and sealed["form_8949"][:3] == day["sealed"]["form_8949"]
    assert sealed["wash_sales"][:2] == day["sealed"]["wash_sales"] and len(sealed["wash_sales"]) == 3


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda s: s["keys"].reverse(), "sealed keys: not in Form 8949 order"),
    (lambda s: s["form_8949"].pop(), "keys, disposals and form_8949 must be as many lines of text"),
    (lambda s: s["totals"].pop("II"), "sealed totals: expected 4 decimal amounts for each of"),
    (lambda s: s["totals"]["I"].__setitem__(0, "lots"), "sealed totals: expected 4 decimal amounts"),
    (lambda s: s["disposal_columns"].pop(), "sealed disposal_columns: expected"),
])
def test_a_damaged_sealed_year_is_refused_with_a_one_line_reason(damage, reason):
    history, _ = format1_history()
    marks = {symbol: D(price) for symbol, price in FORMAT1_MARKS.items()}
    state = orjson.loads(dumps_day_close(close_day(history, day=FORMAT1_DAY, closing_marks=marks, opening_marks=marks,
                                                   allow_short=True)))
    damage(state["ledger"]["sealed"])
    with pytest.raises(ComplianceError, match=reason) as raised:
        restore_ledger(state["ledger"])
    assert "\n" not in str(raised.value)


def test_a_loss_waiting_for_replacement_survives_the_checkpoint_and_becomes_a_wash_sale():
    # IRS Pub 550: buy 100 for $1,000, sell for $750 (checkpoint), buy 100 for $800 two weeks later.
    sold = close_day([fill("buy", "2013-01-01", "100", "10", fid="b1"), fill("sell", "2013-06-01", "100", "7.50", fid="s1")],
                     day=dt.date(2013, 6, 1), closing_marks={}, opening_marks={"XYZ": D(7)})
    state = loads(dumps_day_close(sold))
    assert state["ledger"]["pending_losses"] == {"XYZ": ["s1/1"]}
    bought = close_day([fill("buy", "2013-06-15", "100", "8", fid="b2")], day=dt.date(2013, 6, 15),
                       closing_marks={"XYZ": D(8)}, resume=restore_ledger(state["ledger"]))
    sale = bought.ledger.disposals[0]
    lot = bought.ledger.open_lots()[0]
    assert (sale.disallowed, sale.gain, lot.cost, lot.holding_start) == (D("250.00"), D("0.00"), D("1050.00"), dt.date(2013, 1, 15))


def test_a_new_tax_year_checkpoint_keeps_only_this_years_disposals_and_open_losses():
    fills = [fill("buy", "2023-06-01", "10", "10"), fill("sell", "2023-07-01", "5", "12"),   # a settled 2023 gain
             fill("sell", "2023-12-20", "5", "8", fid="loss"),                                 # a loss, window open into January
             fill("buy", "2024-01-02", "1", "9")]
    state = loads(dumps_day_close(close_day(fills, day=dt.date(2024, 1, 2), closing_marks={"XYZ": D(9)})))["ledger"]
    disposals, wash_sales = state["disposals"], state["wash_sales"]
    assert [row[disposals["columns"].index("disposal_id")] for row in disposals["rows"]] == ["loss/1"]  # 4 of 5 shares unreplaced
    assert [row[wash_sales["columns"].index("booked")] for row in wash_sales["rows"]] == ["2024-01-02"]


def test_a_resumed_ledger_refuses_a_fill_it_already_booked_or_one_older_than_the_checkpoint():
    first = [fill("buy", "2024-05-01", "10", "50", fid="b1", minute=0), fill("buy", "2024-05-01", "5", "50", fid="b2", minute=5)]
    state = loads(dumps_day_close(close_day(first, day=dt.date(2024, 5, 1), closing_marks={"XYZ": D(50)})))["ledger"]
    for again, reason in ((first[1], "fill b2: fill_id: already applied"), (first[0], "is before the last fill applied")):
        with pytest.raises(LedgerError, match=reason):
            close_day([again], day=dt.date(2024, 5, 2), closing_marks={"XYZ": D(50)}, resume=restore_ledger(state))


def test_a_checkpoint_of_another_format_is_refused_with_a_one_line_reason():
    with pytest.raises(ComplianceError, match=r"ledger checkpoint: format: expected one of \[1, 2\], got 7"):
        loads(b'{"format": 7}')


def test_checkpoint_docstring_example_runs():
    result = doctest.testmod(checkpoint, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


_TEXT = st.text(st.characters(max_codepoint=0x2FFF, exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_TEXT, st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | _TEXT,
                                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
                                           max_leaves=20), max_size=6))
def test_checkpoint_bytes_are_the_json_modules_whatever_the_text(state):
    import json

    assert checkpoint._dumps(state) == json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
