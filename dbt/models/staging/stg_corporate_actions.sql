-- Corporate actions, one row per (symbol, ex_date, kind): when an action was received more than once with
-- different values, the latest batch wins (as for bars). Ratios and amounts stay exact decimals here (typed again:
-- a raw layer copied into PostgreSQL by a generic loader may hold them as text).
with ranked as (
    select
        *,
        row_number() over (
            partition by symbol, ex_date, kind order by ingested_at desc, batch_id desc
        ) as version_rank
    from {{ source('raw', 'corporate_actions') }}
)

select
    symbol || ':' || cast(ex_date as varchar) || ':' || kind as action_id,
    symbol,
    ex_date,
    kind,
    cast(ratio as decimal(24, 12)) as ratio,
    cast(amount as decimal(24, 12)) as amount,
    source,
    batch_id,
    ingested_at
from ranked
where version_rank = 1
