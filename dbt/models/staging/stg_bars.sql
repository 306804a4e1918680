-- Typed view over raw.bars with each bar's length; no rows are changed or removed here.
select
    symbol,
    timeframe,
    ts,
    {{ bar_length('timeframe') }} as bar_length,
    open,
    high,
    low,
    close,
    volume,
    vwap,
    trade_count,
    source,
    batch_id,
    ingested_at
from {{ source('raw', 'bars') }}
