"""What the training assets show in the Dagster UI: rounded numbers, the per-learner table, the embedded tear sheet.

Numbers are rounded here, at the display boundary (the registry and ``evaluation.json`` keep
full precision). Tear-sheet charts are inlined as ``data:`` URIs because the UI cannot follow
the relative image paths of ``summary.md`` (which stay, for reading the folder on disk).

Example:
    >>> learner_table({"xgboost": {"ic": 0.031234, "rank_ic": 0.03, "icir": 0.21, "ic_tstat": 4.1, "hit_rate": 0.512,
    ...                            "oracle_fraction": 0.41, "is_ic": 0.06}}).splitlines()[2]
    '| xgboost | 0.0312 | 0.0300 | 0.21 | 4.1 | 51.2% | 41% | 0.0600 | 1.9 |'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from models.tearsheet import embedded_summary

#: Rows the stacking adds after the learners, with the names a reader knows them by.
ENSEMBLE_ROWS = {"ensemble": "**stacked ensemble**", "equal_weight": "equal-weight ensemble"}
_COLUMNS = ("learner", "OOS IC", "rank IC", "ICIR", "t-stat", "hit rate", "of oracle IC", "in-sample IC", "IS / OOS", "weight")


def rounded(value: Any, digits: int = 4) -> Any:
    """``value`` rounded to ``digits`` decimals when it is a finite float; anything else unchanged."""
    return round(value, digits) if isinstance(value, float) and math.isfinite(value) else value


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) and math.isfinite(value) else "n/a"


def learner_table(models: Mapping[str, Mapping[str, float]], weights: Mapping[str, float] | None = None) -> str:
    """Markdown: one row per learner (out-of-fold IC, rank IC, ICIR, t-stat, hit rate, share of the oracle IC,
    in-sample IC and the overfit ratio, the production weight when known), then the ensembles."""
    columns = _COLUMNS if weights is not None else _COLUMNS[:-1]
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    learners = [name for name in models if name not in ENSEMBLE_ROWS]
    for name in [*sorted(learners, key=lambda n: -_sort_key(models[n])), *(n for n in ENSEMBLE_ROWS if n in models)]:
        m = models[name]
        ic, is_ic = m.get("ic", math.nan), m.get("is_ic", math.nan)
        ratio = is_ic / ic if isinstance(is_ic, float) and math.isfinite(is_ic) and ic and math.isfinite(ic) and ic > 0 else math.nan
        cells = [ENSEMBLE_ROWS.get(name, name), _num(ic, ".4f"), _num(m.get("rank_ic", math.nan), ".4f"),
                 _num(m.get("icir", math.nan), ".2f"), _num(m.get("ic_tstat", math.nan), ".1f"),
                 _num(m.get("hit_rate", math.nan), ".1%"), _num(m.get("oracle_fraction", math.nan), ".0%"),
                 _num(is_ic, ".4f") if name not in ENSEMBLE_ROWS else "", _num(ratio, ".1f") if name not in ENSEMBLE_ROWS else ""]
        if weights is not None:
            cells.append("" if name in ENSEMBLE_ROWS else _num(weights.get(name, 0.0), ".2f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sort_key(m: Mapping[str, float]) -> float:
    ic = m.get("ic", math.nan)
    return ic if isinstance(ic, float) and math.isfinite(ic) else -math.inf


def evaluation_metadata(report: Mapping[str, Any], *, passed: bool, sheet: Mapping[str, Path]) -> dict[str, object]:
    """``model_evaluation``'s metadata: headline numbers (rounded), the learner table, the tear sheet with its charts."""
    ens, bt = report["models"]["ensemble"], report["backtest"]
    return {
        "ic": rounded(ens["ic"]), "rank_ic": rounded(ens["rank_ic"]), "icir": rounded(ens["icir"], 3),
        "hit_rate": rounded(ens["hit_rate"]), "oracle_ic": rounded(report["oracle_ic"]),
        "oracle_fraction": rounded(ens["oracle_fraction"], 3),
        "equal_weight_ic": rounded(report["models"]["equal_weight"]["ic"]),
        "sharpe": rounded(bt["sharpe_ratio"], 2), "max_drawdown": rounded(bt["max_drawdown"]),
        "turnover": rounded(bt["turnover"]), "annual_return": rounded(bt["annual_return"]), "gates_passed": passed,
        "learners": dg.MetadataValue.md(learner_table(report["models"])),
        "warnings": dg.MetadataValue.json(report["warnings"]),
        "tearsheet": dg.MetadataValue.path(str(sheet["summary"])),
        "summary": dg.MetadataValue.md(embedded_summary(sheet)),
    }


def cpcv_metadata(summary: Mapping[str, Any]) -> dict[str, object]:
    """``model_evaluation``'s CPCV metadata (``ModelsResource.cpcv``): per learner the mean and 5th-percentile path
    Sharpe and the mean IC, PBO across the learners, the seconds it took.

    Example:
        >>> cpcv_metadata({"members": {"xgboost": {"sharpe_mean": 1.23456, "sharpe_p5": 0.5, "ic_mean": 0.031234}},
        ...                "pbo": 0.2, "seconds": 61.0, "paths": 5})["cpcv_sharpe_mean/xgboost"]
        1.23
    """
    meta: dict[str, object] = {"cpcv_paths": summary["paths"], "cpcv_seconds": summary.get("seconds", math.nan)}
    if "pbo" in summary:
        meta["cpcv_pbo"] = rounded(float(summary["pbo"]), 3)
    for family, m in summary["members"].items():
        meta[f"cpcv_sharpe_mean/{family}"] = rounded(float(m["sharpe_mean"]), 2)
        meta[f"cpcv_sharpe_p5/{family}"] = rounded(float(m["sharpe_p5"]), 2)
        meta[f"cpcv_ic_mean/{family}"] = rounded(float(m["ic_mean"]))
    return meta
