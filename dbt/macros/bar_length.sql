{#- The length of a bar of the given timeframe, as an interval (the contract's timeframes; DuckDB and PostgreSQL). -#}
{% macro bar_length(timeframe) -%}
    case {{ timeframe }}
        when '1m' then interval '1 minute'
        when '5m' then interval '5 minutes'
        when '15m' then interval '15 minutes'
        when '1h' then interval '1 hour'
        when '1d' then interval '1 day'
    end
{%- endmacro %}
