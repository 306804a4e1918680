"""Data Docs read offline: no page loads anything from another host, each validation names its data asset, and the
index lists every suite run into the folder (market and compliance), not only the last context's."""

from __future__ import annotations

import re

import great_expectations as gx
import pandas as pd

from orchestration.market.data_docs import STYLESHEET, docs_context, publish


def _validate(docs, source: str, asset: str, suite: str, frame: pd.DataFrame) -> None:
    ctx = docs_context()
    batch = ctx.data_sources.add_pandas(source).add_dataframe_asset(asset).add_batch_definition_whole_dataframe("all")
    expectations = [gx.expectations.ExpectColumnValuesToBeBetween(column="qty", min_value=0, strict_min=True)]
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(
        name=suite, data=batch, suite=ctx.suites.add(gx.ExpectationSuite(name=suite, expectations=expectations))))
    definition.run(batch_parameters={"dataframe": frame})
    publish(ctx, docs)


def test_data_docs_are_offline_name_their_asset_and_index_every_suite(tmp_path):
    docs = tmp_path / "data_docs"
    _validate(docs, "warehouse", "marts_bars", "marts_bars", pd.DataFrame({"qty": [1.0, 2.0]}))
    _validate(docs, "compliance", "fills", "compliance_fills", pd.DataFrame({"qty": [1.0, -5.0]}))
    pages = list(docs.rglob("*.html"))
    assert len(pages) >= 5  # index, two suites, two validations
    for page in pages:
        text = page.read_text()
        remote = re.findall(r"""<(?:link|script|img)[^>]+(?:href|src)=["'](https?://[^"']+)""", text)
        assert not remote, (page.name, remote[:3])
        assert "alphaline_offline.css" in text, page
    assert (docs / STYLESHEET).stat().st_size > 500
    validation_pages = [p.read_text() for p in (docs / "validations").rglob("*.html")]
    assert any("Data asset: warehouse.marts_bars" in t for t in validation_pages)
    assert not any("Data asset: None" in t for t in validation_pages)
    index = (docs / "index.html").read_text()
    assert "marts_bars" in index and "compliance_fills" in index  # both contexts' runs, not only the last
    assert index.count('class="failed">Failed') == 1 and index.count('class="ok">Succeeded') == 1
