-- Session aggregates per symbol, from the finest timeframe the symbol has that
-- session (native daily bars are used when no intraday bars exist).
with per_timeframe as (
    select
        symbol,
        session,
        timeframe,
        any_value(calendar) as calendar,
        any_value(sector) as sector,
        {{ first_by('open', 'ts') }} as open,
        max(high) as high,
        min(low) as low,
        {{ last_by('close', 'ts') }} as close,
        sum(volume) as volume,
        case
            when count(vwap) = count(*) and sum(volume) > 0 then sum(vwap * volume) / sum(volume)
        end as vwap,
        sum(trade_count) as trade_count,
        count(*) as bar_count
    from {{ ref('bars') }}
    group by symbol, session, timeframe
),

finest as (
    select
        *,
        row_number() over (
            partition by symbol, session
            order by case timeframe when '1m' then 1 when '5m' then 2 when '15m' then 3 when '1h' then 4 else 5 end
        ) as finest_rank
    from per_timeframe
)

select
    finest.symbol,
    finest.session,
    sess.open_ts as ts,
    sess.close_ts,
    finest.timeframe as from_timeframe,
    finest.calendar,
    finest.sector,
    finest.open,
    finest.high,
    finest.low,
    finest.close,
    -- vwap can drift marginally outside [low, high] through float rounding of the weighted sum
    case when finest.vwap is not null then least(greatest(finest.vwap, finest.low), finest.high) end as vwap,
    finest.volume,
    finest.trade_count,
    finest.bar_count,
    case
        when finest.timeframe = '1d' then 1
        else cast(ceil(
            ({{ epoch_seconds('sess.close_ts') }} - {{ epoch_seconds(bucket(bar_length('finest.timeframe'), 'sess.open_ts')) }})
            / {{ epoch_seconds(bar_length('finest.timeframe')) }}
        ) as integer)
    end as expected_bar_count
from finest
inner join {{ source('raw', 'sessions') }} as sess
    on sess.calendar = finest.calendar and sess.session = finest.session
where finest.finest_rank = 1
