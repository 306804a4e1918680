"""Great Expectations Data Docs that read well offline, with every suite (market and compliance) in one site.

GX 1.x renders its pages with Bootstrap, Font Awesome, jQuery and bootstrap-table from CDNs:
offline the pages lose their layout and the index (a table filled by JavaScript) is empty.
:func:`publish` therefore

1. names each validation's data asset (``datasource.asset``; GX leaves a dataframe batch's
   name out, so the pages said "Data asset: None"),
2. lets GX build the pages into ``docs_dir``,
3. drops every link and script that points off the machine (the logo comes from the site's own
   ``static/`` folder, the newsletter footer goes), adds a small local stylesheet
   (:data:`STYLESHEET`, icons included), and
4. writes ``index.html`` itself: every validation page found in the folder (not only this
   run's, as GX's would), newest first, with its suite, asset, time and status.

Example:
    >>> import great_expectations as gx  # doctest: +SKIP
    >>> ctx = docs_context()  # doctest: +SKIP
    >>> ...  # add suites, run validations on ctx  # doctest: +SKIP
    >>> publish(ctx, Path("/tmp/docs"))  # doctest: +SKIP
    PosixPath('/tmp/docs/index.html')
"""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

SITE = "alphaline"
STYLESHEET = "static/styles/alphaline_offline.css"
_REMOTE_LOGO = re.compile(r"""src=["']https://great-expectations-web-assets[^"']*/logo-long\.png[^"']*["']""")
_NEWSLETTER = re.compile(r"<footer>\s*<p>Stay current on everything GX.*?</footer>", re.S)
_REMOTE_TAG = re.compile(r"""<link[^>]+href=["']https?://[^>]*>|<script[^>]+src=["']https?://[^>]*>\s*</script>""", re.I)
_CSS = """/* Written by alphaline: Data Docs without the CDN (see orchestration/market/data_docs.py). */
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0; background: #fff; }
a { color: #0b5cad; text-decoration: none; } a:hover { text-decoration: underline; }
.navbar { display: flex; align-items: center; gap: 1em; padding: .5em 1.5em; border-bottom: 1px solid #ddd; background: #f7f7f9; }
.navbar img, .navbar-brand img { height: 28px; } .navbar-toggler, .ge-breadcrumbs { display: none; }
.container-fluid { padding: 1em 1.5em; } .row { display: flex; flex-wrap: wrap; }
.col-lg-2, .col-md-2 { flex: 0 0 15%; max-width: 15%; } .col-md-10, .col-lg-10 { flex: 1 1 80%; max-width: 85%; }
.col-12 { flex: 0 0 100%; } .col-6 { flex: 0 0 48%; }
.nav { list-style: none; padding: 0; margin: 0; } .nav-link { display: block; padding: .25em .5em; font-size: 13px; }
.ge-navigation-sidebar-container { position: sticky; top: 0; padding: .5em; background: #f7f7f9; border-radius: 4px; }
.alert { padding: .75em 1em; border-radius: 4px; margin-bottom: 1em; }
.alert-secondary { background: #eef0f3; border: 1px solid #d6d8db; }
.card-header, h1, h2, h3, h4, h5 { margin: .6em 0 .4em; } h5 { font-size: 16px; } .h6 { font-weight: 600; }
.badge { display: inline-block; padding: .1em .45em; border-radius: 3px; font: 12px/1.4 ui-monospace, monospace; }
.badge-secondary { background: #6c757d; color: #fff; } .badge-info { background: #17a2b8; color: #fff; }
table, .table { border-collapse: collapse; width: 100%; margin: .5em 0 1em; }
th, td { border: 1px solid #dee2e6; padding: .35em .6em; vertical-align: top; text-align: left; }
thead th { background: #f1f3f5; } tr:nth-child(even) td { background: #fafbfc; }
.text-success { color: #1e7e34; } .text-danger { color: #c82333; } .text-warning { color: #b8860b; }
.fas::before, .fa::before { font-style: normal; font-weight: 700; }
.fa-check-circle::before { content: "\\2714"; } .fa-times::before, .fa-times-circle::before { content: "\\2718"; }
.fa-exclamation-triangle::before { content: "!"; } .fa-info-circle::before { content: "i"; }
.cooltip .top, .d-none, .tab-content > .tab-pane:not(.active) { display: none; }
.ok { color: #1e7e34; font-weight: 600; } .failed { color: #c82333; font-weight: 600; }
"""


def docs_context() -> Any:
    """An ephemeral GX context for suites whose results :func:`publish` will add to a Data Docs folder."""
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = {"globally": False}
    return ctx


def publish(ctx: Any, docs_dir: Path) -> Path:
    """Name the data asset of every validation ``ctx`` ran, add their pages to ``docs_dir``, make the site offline.

    GX builds into a scratch folder first: building straight into ``docs_dir`` would delete the
    pages of the suites other contexts (other runs, the other domain) published there.

    Returns:
        The site's ``index.html``.
    """
    store = ctx.validation_results_store
    for key in store.list_keys():
        result = store.get(key)
        batch = result.meta.get("active_batch_definition") or {}
        get = batch.get if isinstance(batch, dict) else lambda name, b=batch: getattr(b, name, None)
        if get("data_asset_name"):
            result.meta["batch_spec"] = {**dict(result.meta.get("batch_spec") or {}),
                                         "data_asset_name": f"{get('datasource_name')}.{get('data_asset_name')}"}
            store.set(key, result)
    with tempfile.TemporaryDirectory(prefix="gx-docs-") as scratch:
        ctx.add_data_docs_site(site_name=SITE, site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": scratch},
        })
        ctx.build_data_docs(site_names=[SITE])
        shutil.copytree(scratch, docs_dir, dirs_exist_ok=True)
    make_offline(docs_dir)
    return docs_dir / "index.html"


def make_offline(docs_dir: Path) -> None:
    """Strip off-machine links and scripts from every page, add the local stylesheet, write the index."""
    (docs_dir / STYLESHEET).parent.mkdir(parents=True, exist_ok=True)
    (docs_dir / STYLESHEET).write_text(_CSS)
    for page in docs_dir.rglob("*.html"):
        if page.parent == docs_dir and page.name == "index.html":
            continue
        text = page.read_text()
        if STYLESHEET in text:
            continue
        root = os.path.relpath(docs_dir, page.parent)
        link = f'<link rel="stylesheet" href="{root}/{STYLESHEET}">'
        text = _REMOTE_LOGO.sub(f'src="{root}/static/images/logo-long.png"', _NEWSLETTER.sub("", _REMOTE_TAG.sub("", text)))
        page.write_text(text.replace("</head>", f"{link}\n</head>", 1))
    (docs_dir / "index.html").write_text(_index(docs_dir))


def _index(docs_dir: Path) -> str:
    rows = []
    for page in sorted((docs_dir / "validations").rglob("*.html"), key=lambda p: p.parent.name, reverse=True):
        text = page.read_text()
        suite = page.relative_to(docs_dir / "validations").parts[0]
        asset = re.search(r"Data asset:\s*([^<\s]+)", text)
        status = "Succeeded" if re.search(r"Status:.*?Succeeded", text, re.S) else "Failed"
        when = re.sub(r"^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d).*$", r"\1-\2-\3 \4:\5:\6 UTC", page.parent.name)
        rows.append(f'<tr><td class="{"ok" if status == "Succeeded" else "failed"}">{status}</td><td>{html.escape(when)}</td>'
                    f'<td><a href="expectations/{html.escape(suite)}.html">{html.escape(suite)}</a></td>'
                    f'<td>{html.escape(asset.group(1) if asset else "")}</td>'
                    f'<td><a href="{html.escape(str(page.relative_to(docs_dir)))}">results</a></td></tr>')
    suites = sorted(p.stem for p in (docs_dir / "expectations").glob("*.html"))
    return "\n".join([
        "<!doctype html><html><head><meta charset='utf-8'><title>Alphaline data docs</title>",
        f'<link rel="stylesheet" href="{STYLESHEET}"></head><body><div class="container-fluid">',
        "<h2>Alphaline data docs</h2>",
        "<p>Great Expectations suites on <code>marts.bars</code> (every ingest) and on each closed trading day "
        "(<code>compliance_fills</code>, <code>compliance_lots</code>, <code>compliance_disposals</code>). Newest first.</p>",
        "<h4>Validations</h4><table><thead><tr><th>status</th><th>run</th><th>suite</th><th>data asset</th><th></th></tr></thead>",
        "<tbody>", *rows, "</tbody></table>",
        "<h4>Expectation suites</h4><ul>", *(f'<li><a href="expectations/{html.escape(s)}.html">{html.escape(s)}</a></li>' for s in suites),
        "</ul></div></body></html>", "",
    ])
