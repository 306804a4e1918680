-- Clean bars: one row per (symbol, timeframe, ts); when a bar was ingested more
-- than once, the latest batch wins. Adds the session it belongs to and the time
-- it became knowable (close_ts): ts + bar length, capped at the session close
-- (daily bars: the session close).
-- Prices and volume are as traded (raw: what the venue fills at, what positions are marked to); the adj_*
-- columns restate them for corporate actions (adjustment_factors: splits and cash dividends, backward), for
-- features, labels and backtests: a 2-for-1 split is not a -50% return there.
with repeated as (
    -- keys received more than once (usually none): only their rows need ranking, so the window below sorts
    -- a handful of rows instead of every bar
    select symbol, timeframe, ts from {{ ref('stg_bars') }} group by symbol, timeframe, ts having count(*) > 1
),

ranked as (
    select
        b.*,
        row_number() over (
            partition by b.symbol, b.timeframe, b.ts order by b.ingested_at desc, b.batch_id desc
        ) as version_rank
    from {{ ref('stg_bars') }} as b
    where exists (select 1 from repeated as r where r.symbol = b.symbol and r.timeframe = b.timeframe and r.ts = b.ts)
),

latest as (
    select
        symbol, timeframe, ts, bar_length, open, high, low, close, volume, vwap, trade_count, source, batch_id,
        ingested_at
    from {{ ref('stg_bars') }} as b
    where not exists (select 1 from repeated as r where r.symbol = b.symbol and r.timeframe = b.timeframe and r.ts = b.ts)
    union all
    select
        symbol, timeframe, ts, bar_length, open, high, low, close, volume, vwap, trade_count, source, batch_id,
        ingested_at
    from ranked where version_rank = 1
),

placed as (
    select
        latest.*,
        sym.calendar,
        sym.sector,
        case
            when sym.calendar = '24/7' then timezone('UTC', latest.ts)::date
            else timezone('America/New_York', latest.ts)::date
        end as session
    from latest
    inner join {{ source('raw', 'symbols') }} as sym using (symbol)
)

select
    placed.symbol,
    placed.timeframe,
    placed.ts,
    case
        when placed.timeframe = '1d' then sess.close_ts
        else least(placed.ts + placed.bar_length, sess.close_ts)
    end as close_ts,
    placed.session,
    placed.calendar,
    placed.sector,
    placed.open,
    placed.high,
    placed.low,
    placed.close,
    placed.volume,
    placed.vwap,
    placed.trade_count,
    coalesce(adj.split_factor, 1.0) as split_factor,
    coalesce(adj.price_factor, 1.0) as price_factor,
    placed.open * coalesce(adj.price_factor, 1.0) as adj_open,
    placed.high * coalesce(adj.price_factor, 1.0) as adj_high,
    placed.low * coalesce(adj.price_factor, 1.0) as adj_low,
    placed.close * coalesce(adj.price_factor, 1.0) as adj_close,
    placed.vwap * coalesce(adj.price_factor, 1.0) as adj_vwap,
    placed.volume / coalesce(adj.split_factor, 1.0) as adj_volume,
    placed.source,
    placed.batch_id,
    placed.ingested_at
from placed
left join {{ source('raw', 'sessions') }} as sess
    on sess.calendar = placed.calendar and sess.session = placed.session
left join {{ ref('adjustment_factors') }} as adj
    on adj.symbol = placed.symbol and adj.session = placed.session
