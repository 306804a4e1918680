"""The Great Expectations (1.x) suite on ``marts.bars``, run in an ephemeral context.

GX validates pandas, not polars: the marts are read into pandas at this boundary.
Data Docs (HTML) are written under ``reports/data_docs/`` so a user can open them.

Example:
    >>> import pandas as pd  # doctest: +SKIP
    >>> run_bars_suite(pd.DataFrame(...), docs_dir=Path("/tmp/docs")).success  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SUITE_NAME = "marts_bars"


@dataclass(frozen=True)
class SuiteOutcome:
    success: bool
    evaluated: int
    failed: list[str]  # "expectation(column): n unexpected"
    docs_index: Path | None


def _expectations() -> list:
    import great_expectations as gx

    E = gx.expectations
    out: list = [
        E.ExpectTableColumnsToMatchSet(
            column_set=["symbol", "timeframe", "ts", "close_ts", "session", "calendar", "sector", "open", "high",
                        "low", "close", "volume", "vwap", "trade_count", "split_factor", "price_factor", "adj_open",
                        "adj_high", "adj_low", "adj_close", "adj_vwap", "adj_volume", "source", "batch_id", "ingested_at"],
            exact_match=True,
        ),
        E.ExpectCompoundColumnsToBeUnique(column_list=["symbol", "timeframe", "ts"]),
        E.ExpectColumnValuesToBeInSet(column="timeframe", value_set=["1m", "5m", "15m", "1h", "1d"]),
        E.ExpectColumnValuesToMatchRegex(column="symbol", regex=r"^[A-Z0-9.\-/]{1,15}$"),
        E.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
        E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="low", or_equal=True),
        E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="open", or_equal=True),
        E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="close", or_equal=True),
        E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="open", column_B="low", or_equal=True),
        E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="close", column_B="low", or_equal=True),
        E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="close_ts", column_B="ts"),
    ]
    for col in ("symbol", "timeframe", "ts", "close_ts", "session", "open", "high", "low", "close", "volume"):
        out.append(E.ExpectColumnValuesToNotBeNull(column=col))
    for col in ("open", "high", "low", "close", "price_factor", "adj_close"):
        out.append(E.ExpectColumnValuesToBeBetween(column=col, min_value=0, strict_min=True))
    # Adjustment scales a bar's prices by one positive factor: the OHLC order is kept.
    out.append(E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="adj_high", column_B="adj_low", or_equal=True))
    return out


def run_bars_suite(df: pd.DataFrame, *, docs_dir: Path) -> SuiteOutcome:
    """Validate ``marts.bars`` (as pandas) and write Data Docs to ``docs_dir`` (readable offline, see :mod:`.data_docs`)."""
    import great_expectations as gx

    from orchestration.market.data_docs import docs_context, publish

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    ctx = docs_context()
    batch_def = ctx.data_sources.add_pandas("warehouse").add_dataframe_asset("marts_bars").add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name=SUITE_NAME, expectations=_expectations()))
    validation = ctx.validation_definitions.add(gx.ValidationDefinition(name="marts_bars", data=batch_def, suite=suite))
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(name="marts_bars", validation_definitions=[validation]))
    result = checkpoint.run(batch_parameters={"dataframe": df})
    failed, evaluated = [], 0
    for run in result.run_results.values():
        for r in run.results:
            evaluated += 1
            if not r.success:
                kwargs = r.expectation_config.kwargs
                col = kwargs.get("column") or kwargs.get("column_A") or ",".join(kwargs.get("column_list", []))
                failed.append(f"{r.expectation_config.type}({col}): {r.result.get('unexpected_count', '?')} unexpected")
    index = publish(ctx, docs_dir)
    return SuiteOutcome(success=bool(result.success), evaluated=evaluated, failed=failed, docs_index=index if index.exists() else None)
