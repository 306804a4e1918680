"""The Great Expectations (1.x) suite on a closed day: its fills, its open tax lots and its disposals.

Same approach as the ``marts.bars`` suite (:mod:`orchestration.market.expectations`): an
ephemeral GX context, pandas frames at the boundary (GX validates pandas, not the ledger's
Decimals), one validation per frame. Amounts become floats here only to be compared with
zero; the one exact rule, "proceeds = qty × price − fees", is computed in Decimal first and
handed to GX as its error in dollars, which must stay under half a cent.

With ``docs_dir`` the results also go to the Data Docs site beside the ``marts.bars`` suite
(``reports/data_docs/``, suites ``compliance_*``). That folder is never sealed: its HTML carries
run times, and a day's sealed records must be byte-for-byte reproducible. The failed
expectations go into the check's metadata too.

Example:
    >>> outcome = run_day_suite(day_close)  # doctest: +SKIP
    >>> outcome.success, outcome.failed  # doctest: +SKIP
    (False, ['lots: expect_column_values_to_be_between(qty): 1 unexpected, e.g. [-5.0]'])
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from trader.compliance import DayClose
from trader.compliance.checkpoint import paused_gc

#: Half a cent: the pro-rata split of a fee may leave Decimal residue, never a cent.
MAX_AMOUNT_ERROR = 0.005
_FAR_OFF = 1e18  # an amount that cannot be matched to the day's fill at all


@dataclass(frozen=True)
class SuiteOutcome:
    success: bool
    evaluated: int
    failed: list[str]
    rows: dict[str, int]


def day_frames(close: DayClose) -> dict[str, pd.DataFrame]:
    """The three frames the suite validates: ``fills``, ``lots`` (open at the close), ``disposals`` (of the day).

    Built a column at a time (dates and times converted by pandas in one call per column):
    at year end the open lots alone are tens of thousands of rows.
    """
    day_fills = close.day_fills
    ts = pd.to_datetime([f.ts for f in day_fills], utc=True) if day_fills else pd.DatetimeIndex([], tz="UTC")
    fills = pd.DataFrame({
        "fill_id": [f.fill_id for f in day_fills], "side": [f.side for f in day_fills],
        "qty": _floats(f.qty for f in day_fills), "price": _floats(f.price for f in day_fills),
        "fee": _floats(f.fee for f in day_fills), "ts": ts,
        "trade_date": _dates([f.trade_date for f in day_fills]),
    }, columns=["fill_id", "side", "qty", "price", "fee", "ts", "trade_date"])
    open_lots = close.ledger.open_lots()
    lots = pd.DataFrame({
        "lot_id": [lot.lot_id for lot in open_lots], "direction": [lot.direction for lot in open_lots],
        "qty": _floats(lot.qty for lot in open_lots), "cost": _floats(lot.cost for lot in open_lots),
        "acquired": _dates([lot.acquired for lot in open_lots]), "holding_start": _dates([lot.holding_start for lot in open_lots]),
        "as_of": _dates([close.day] * len(open_lots)),
    }, columns=["lot_id", "direction", "qty", "cost", "acquired", "holding_start", "as_of"])
    by_id = {f.fill_id: f for f in day_fills}
    todays = [d for d in close.ledger.disposals if d.sold == close.day]
    # Losses on closing shorts deferred into a replacement short lot (Reg. 1.1091-1(g)), for the shorts covered today.
    deferred = close.ledger.sealed.deferred({d.lot_id for d in todays if d.direction == "short"})
    for wash in close.ledger.wash_sales:
        deferred[wash.replacement_lot_id] = deferred.get(wash.replacement_lot_id, Decimal(0)) + wash.disallowed
    disposals = pd.DataFrame({
        "disposal_id": [d.disposal_id for d in todays], "direction": [d.direction for d in todays],
        "qty": _floats(d.qty for d in todays), "proceeds": _floats(d.proceeds for d in todays),
        "basis": _floats(d.basis for d in todays), "disallowed": _floats(d.disallowed for d in todays),
        "loss": _floats(d.loss for d in todays), "acquired": _dates([d.acquired for d in todays]),
        "holding_start": _dates([d.holding_start for d in todays]), "sold": _dates([d.sold for d in todays]),
        "amount_error": [_amount_error(d, by_id, deferred) for d in todays],
    }, columns=["disposal_id", "direction", "qty", "proceeds", "basis", "disallowed", "loss", "acquired",
                "holding_start", "sold", "amount_error"])
    # An empty frame keeps the untyped (object) columns it always had.
    return {name: frame if len(frame) else pd.DataFrame(columns=frame.columns)
            for name, frame in (("fills", fills), ("lots", lots), ("disposals", disposals))}


def _floats(values) -> list[float]:
    return [float(v) for v in values]


_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


def _dates(values: list) -> pd.Series:
    """Calendar dates as midnight timestamps (``datetime64[ns]``), through numpy day numbers, not per-row objects."""
    days = np.fromiter((d.toordinal() - _EPOCH_ORDINAL for d in values), dtype=np.int64, count=len(values))
    return pd.Series(days.astype("datetime64[D]").astype("datetime64[ns]"))


def _amount_error(disposal, fills_by_id, deferred: dict[str, Decimal] | None = None) -> float:
    """|booked − (qty × price ∓ pro-rata fee)| against the fill that closed the lot, in dollars.

    A long lot is closed by a sale: proceeds = qty × price − fee. A short lot is closed by a
    buy: its basis = qty × price + fee, plus any loss on closing an earlier short that a wash sale
    deferred into this lot (``deferred``: by lot, the whole lot's; a partial cover carries its share,
    so the excess may be anything from 0 to that total). Either way the fee share is the disposal's share of the fill.
    """
    fill = fills_by_id.get(disposal.fill_id)
    if fill is None:
        return _FAR_OFF
    fee = fill.fee * disposal.qty / fill.qty
    if disposal.direction == "long":
        return float(abs(Decimal(disposal.proceeds) - (disposal.qty * fill.price - fee)))
    excess = Decimal(disposal.basis) - (disposal.qty * fill.price + fee)
    allowed = (deferred or {}).get(disposal.lot_id, Decimal(0))
    return float(max(-excess, excess - allowed, Decimal(0)))


def _suites(day: pd.Timestamp) -> dict[str, list]:
    import great_expectations as gx

    E = gx.expectations

    def positive(col: str, strict: bool = True):
        return E.ExpectColumnValuesToBeBetween(column=col, min_value=0, strict_min=strict)

    def not_after(later: str, earlier: str):
        return E.ExpectColumnPairValuesAToBeGreaterThanB(column_A=later, column_B=earlier, or_equal=True)

    return {
        "fills": [
            E.ExpectColumnValuesToBeUnique(column="fill_id"),
            *(E.ExpectColumnValuesToNotBeNull(column=c) for c in ("fill_id", "side", "qty", "price", "fee", "ts")),
            E.ExpectColumnValuesToBeInSet(column="side", value_set=["buy", "sell"]),
            positive("qty"), positive("price"), positive("fee", strict=False),
            E.ExpectColumnValuesToBeInSet(column="trade_date", value_set=[day]),
            E.ExpectColumnValuesToBeIncreasing(column="ts"),  # FIFO order is execution order
        ],
        "lots": [
            E.ExpectColumnValuesToBeInSet(column="direction", value_set=["long", "short"]),
            positive("qty"), positive("cost", strict=False),
            not_after("as_of", "acquired"), not_after("acquired", "holding_start"),
        ],
        "disposals": [
            positive("qty"), positive("proceeds", strict=False), positive("basis", strict=False),
            positive("disallowed", strict=False), not_after("loss", "disallowed"),
            not_after("sold", "acquired"), not_after("sold", "holding_start"),
            E.ExpectColumnValuesToBeInSet(column="sold", value_set=[day]),
            E.ExpectColumnValuesToBeBetween(column="amount_error", min_value=0, max_value=MAX_AMOUNT_ERROR),
        ],
    }


def run_day_suite(close: DayClose, *, docs_dir: Path | None = None) -> SuiteOutcome:
    """Validate the day's fills, open lots and disposals; ``failed`` names each broken expectation.

    ``docs_dir``: also publish the results to that Data Docs site (:mod:`orchestration.market.data_docs`).
    """
    import great_expectations as gx

    from orchestration.market.data_docs import docs_context, publish

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # The pages show each failure's value counts (SUMMARY); the outcome alone needs only the
    # count and a sample (BASIC), which spares GX a value count per expectation (~0.1 s at year end).
    result_format = "BASIC" if docs_dir is None else "SUMMARY"
    # GX allocates heavily while the day close (a year of lots) is alive: with the collector
    # running, its collections walked that close again and again. What GX leaves in cycles is
    # collected once the collector runs again.
    with paused_gc():
        ctx = docs_context()
        source = ctx.data_sources.add_pandas("compliance")
        frames = day_frames(close)
        failed, evaluated = [], 0
        for name, expectations in _suites(pd.Timestamp(close.day)).items():
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("day")
            suite = ctx.suites.add(gx.ExpectationSuite(name=f"compliance_{name}", expectations=expectations))
            validation = ctx.validation_definitions.add(gx.ValidationDefinition(name=f"compliance_{name}", data=batch,
                                                                                suite=suite))
            result = validation.run(batch_parameters={"dataframe": frames[name]}, result_format=result_format)
            for r in result.results:
                evaluated += 1
                if not r.success:
                    failed.append(f"{name}: {_describe(r)}")
        if docs_dir is not None:
            publish(ctx, docs_dir)
    return SuiteOutcome(success=not failed, evaluated=evaluated, failed=failed, rows={k: len(v) for k, v in frames.items()})


def _describe(result) -> str:
    kwargs = result.expectation_config.kwargs
    column = kwargs.get("column") or f"{kwargs.get('column_A')} vs {kwargs.get('column_B')}"
    count = result.result.get("unexpected_count", "?")
    sample = result.result.get("partial_unexpected_list") or []
    example = f", e.g. {[str(v) for v in sample[:3]]}" if sample else ""
    return f"{result.expectation_config.type}({column}): {count} unexpected{example}"
