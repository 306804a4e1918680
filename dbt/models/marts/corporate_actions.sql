-- Each corporate action with the step it applies to the prices before its ex-date (backward adjustment):
--   split:          step = 1 / ratio                      (2-for-1: history halves, volume doubles)
--   cash dividend:  step = 1 - amount / close_before_ex   (CRSP-style: the last raw close before the ex-date)
-- `effective`: the ex-date falls within the symbol's data (an action announced for a later session restates
-- nothing yet: until its ex-date the prices are not split).
with placed_bars as (
    -- only the bars of symbols that have actions: the closes before each ex-date
    select
        b.symbol,
        b.ts,
        b.close,
        case
            when sym.calendar = '24/7' then timezone('UTC', b.ts)::date
            else timezone('America/New_York', b.ts)::date
        end as session
    from {{ ref('stg_bars') }} as b
    inner join {{ source('raw', 'symbols') }} as sym using (symbol)
    where b.symbol in (select symbol from {{ ref('stg_corporate_actions') }})
),

last_session as (
    -- a bar's session only grows with its ts: the last session is the session of the last bar
    select
        b.symbol,
        case
            when sym.calendar = '24/7' then timezone('UTC', max(b.ts))::date
            else timezone('America/New_York', max(b.ts))::date
        end as last_session
    from {{ ref('stg_bars') }} as b
    inner join {{ source('raw', 'symbols') }} as sym using (symbol)
    where b.symbol in (select symbol from {{ ref('stg_corporate_actions') }})
    group by b.symbol, sym.calendar
),

before_ex as (
    select
        a.action_id,
        {{ last_by('p.close', 'p.ts') }} as close_before_ex
    from {{ ref('stg_corporate_actions') }} as a
    inner join placed_bars as p on p.symbol = a.symbol and p.session < a.ex_date
    group by a.action_id
)

select
    a.action_id,
    a.symbol,
    a.ex_date,
    a.kind,
    a.ratio,
    a.amount,
    bx.close_before_ex,
    case
        when a.kind = 'split' then 1.0 / cast(a.ratio as float8)
        when bx.close_before_ex is null then 1.0
        else 1.0 - cast(a.amount as float8) / bx.close_before_ex
    end as step_factor,
    case when a.kind = 'split' then 1.0 / cast(a.ratio as float8) else 1.0 end as split_step,
    coalesce(a.ex_date <= ls.last_session, false) as effective,
    a.source,
    a.batch_id
from {{ ref('stg_corporate_actions') }} as a
left join before_ex as bx using (action_id)
left join last_session as ls using (symbol)
