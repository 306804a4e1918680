-- Cumulative backward adjustment factors per (symbol, session), CRSP-style: a price of session d times
-- price_factor is in the units of the latest data (split_factor: the product of 1 / ratio over the splits
-- with ex-date after d; dividend_factor: the product of 1 - amount / close_before_ex over the dividends
-- with ex-date after d). On and after the last effective ex-date every factor is 1: adjusted = raw.
-- History is restated when an action arrives (standard practice): returns across an ex-date become the
-- economic return, and returns that do not span one are unchanged.
with grid as (
    select sym.symbol, sess.session
    from {{ source('raw', 'symbols') }} as sym
    inner join {{ source('raw', 'sessions') }} as sess on sess.calendar = sym.calendar
),

steps as (
    select
        g.symbol,
        g.session,
        {{ product('a.split_step') }} as split_factor,
        {{ product("case when a.kind = 'cash_dividend' then a.step_factor else 1.0 end") }} as dividend_factor
    from grid as g
    inner join {{ ref('corporate_actions') }} as a
        on a.symbol = g.symbol and a.effective and a.ex_date > g.session
    group by g.symbol, g.session
)

select
    g.symbol,
    g.session,
    coalesce(s.split_factor, 1.0) as split_factor,
    coalesce(s.dividend_factor, 1.0) as dividend_factor,
    coalesce(s.split_factor, 1.0) * coalesce(s.dividend_factor, 1.0) as price_factor
from grid as g
left join steps as s on s.symbol = g.symbol and s.session = g.session
