"""Splits and cash dividends from Alpaca's corporate-actions API (``GET /v1/corporate-actions``).

:class:`AlpacaCorporateActions` asks alpaca-py's ``CorporateActionsClient`` (which follows
``next_page_token`` itself) for forward splits, reverse splits and cash dividends of the
configured symbols with ex-date in a window, and returns them in the corporate-action
contract (:mod:`orchestration.market.corporate_actions`):

* ``forward_split`` / ``reverse_split``: ``ratio = new_rate / old_rate`` (a 2-for-1 split is
  ``new_rate=2, old_rate=1``; a 1-for-10 reverse split ``ratio = 0.1``), exact from the decimal
  text of each rate;
* ``cash_dividend``: ``amount = rate`` (cash per share).

The bars must stay raw (:class:`~orchestration.market.alpaca.AlpacaConfig` ``adjustment="raw"``, the
default): the marts adjust them with these actions, and bars Alpaca already adjusted would be adjusted twice.

Other kinds (mergers, spin-offs, name changes, stock dividends) are not adjusted for yet and are
left out; their count is logged. Errors become one-line :class:`~orchestration.errors.SourceError`\\ s
like the bar source's (the same retry on HTTP 429/504, the keys never in a message).

Example:
    >>> _ratio({"new_rate": 3, "old_rate": 2})
    '1.5'
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from decimal import Decimal
from typing import Any

import polars as pl
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import CorporateActionsType
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.requests import CorporateActionsRequest

from orchestration.market.alpaca import AlpacaConfig, AlpacaSource, _TimeoutAdapter
from orchestration.market.corporate_actions import conform_actions, empty_actions

log = logging.getLogger(__name__)
_TYPES = [CorporateActionsType.FORWARD_SPLIT, CorporateActionsType.REVERSE_SPLIT, CorporateActionsType.CASH_DIVIDEND]
_COLUMNS = ("symbol", "ex_date", "kind", "ratio", "amount")


def _ratio(row: dict[str, Any]) -> str:
    ratio = Decimal(str(row["new_rate"])) / Decimal(str(row["old_rate"]))
    return str(ratio.normalize())


class AlpacaCorporateActions(AlpacaSource):
    """Corporate actions of :class:`~orchestration.market.alpaca.AlpacaConfig` symbols (see the module docstring).

    Args:
        config: the symbols (the timeframe and feed are not used here) and ``url_override``.
        api_key, secret_key: default to ``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``.
    """

    name = "alpaca"

    def __init__(self, config: AlpacaConfig, *, api_key: str | None = None, secret_key: str | None = None):
        super().__init__(config, api_key=api_key, secret_key=secret_key)

    def corporate_actions(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Actions with ex-date in ``[start, end]`` (both inclusive), in the contract's text columns.

        Raises:
            SourceError: Alpaca refused the keys or the request, kept rate limiting, failed, or was unreachable.
        """
        what = f"corporate actions of {len(self.config.symbols)} symbol(s) {start}..{end}"
        client = CorporateActionsClient(self._api_key, self._secret_key, raw_data=True, url_override=self.config.base_url)
        client._retry = 0  # our retry (per HTTP request) replaces alpaca-py's fixed sleeps, as for bars
        adapter = _TimeoutAdapter(self.config.timeout_seconds)
        client._session.mount("http://", adapter)
        client._session.mount("https://", adapter)
        plain_get = CorporateActionsClient.get.__get__(client)
        client.get = functools.partial(self._with_retry, plain_get, what)
        request = CorporateActionsRequest(symbols=list(self.config.symbols), types=_TYPES, start=start, end=end)
        try:
            raw = client.get_corporate_actions(request) or {}
        except (APIError, requests.RequestException) as err:
            raise self._error(err, what) from err
        return _frame(raw)


def _frame(raw: dict[str, list[dict[str, Any]]]) -> pl.DataFrame:
    rows: list[dict[str, str | None]] = []
    skipped = 0
    for kind, items in raw.items():
        for item in items or []:
            if kind in ("forward_splits", "reverse_splits"):
                rows.append({"symbol": item.get("symbol"), "ex_date": item.get("ex_date"), "kind": "split",
                             "ratio": _ratio(item), "amount": None})
            elif kind == "cash_dividends":
                rows.append({"symbol": item.get("symbol"), "ex_date": item.get("ex_date"), "kind": "cash_dividend",
                             "ratio": None, "amount": str(Decimal(str(item["rate"])))})
            else:
                skipped += 1
    if skipped:
        log.info("alpaca: %d corporate action(s) of kinds not adjusted for were left out", skipped)
    if not rows:
        return empty_actions()
    frame = pl.DataFrame(rows, schema=dict.fromkeys(_COLUMNS, pl.String))
    return conform_actions(frame.sort("ex_date", "symbol", "kind"), source="alpaca")
