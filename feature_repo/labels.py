"""Labels: what the models learn to predict. Kept apart from the features, never served online.

``label_fwd_ret_{h}`` is the forward log return from the close of the bar to the
close ``h`` bars later (same symbol, trading bars, so across nights and holidays);
``label_fwd_sign_{h}`` is its sign (-1, 0, 1). A label whose horizon runs past the
end of the data is null, never zero.

Example:
    >>> import datetime as dt, polars as pl
    >>> t = [dt.datetime(2024, 1, 2, 15, m, tzinfo=dt.UTC) for m in (0, 15, 30)]
    >>> bars = pl.DataFrame({"symbol": ["A"] * 3, "close_ts": t, "close": [1.0, 2.0, 4.0]})
    >>> compute_labels(bars, horizons=(1,))["label_fwd_sign_1"].to_list()
    [1, 1, None]
"""

from __future__ import annotations

import polars as pl

HORIZONS: tuple[int, ...] = (1, 4, 26)
LABEL_NAMES: tuple[str, ...] = tuple(f"label_fwd_{kind}_{h}" for h in HORIZONS for kind in ("ret", "sign"))


def compute_labels(bars: pl.DataFrame, *, horizons: tuple[int, ...] = HORIZONS) -> pl.DataFrame:
    """Forward returns and signs for every bar of ``bars`` (columns ``symbol``, ``close_ts``, ``close``).

    Returns ``symbol, event_timestamp`` (the bar's close) and the label columns,
    sorted by symbol and time.
    """
    close = pl.col("close")
    labels = []
    for h in horizons:
        ret = (close.shift(-h) / close).log().over("symbol")
        ret = pl.when(ret.is_finite()).then(ret).otherwise(None)
        labels += [ret.alias(f"label_fwd_ret_{h}"), ret.sign().cast(pl.Int8).alias(f"label_fwd_sign_{h}")]
    return (
        bars.select("symbol", pl.col("close_ts").cast(pl.Datetime("us", "UTC")).alias("event_timestamp"), "close")
        .sort("symbol", "event_timestamp")
        .select("symbol", "event_timestamp", *labels)
    )
