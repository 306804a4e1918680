{#- SQL that differs between the warehouse engines: DuckDB (local) and PostgreSQL (the servers profile).
    The DuckDB forms are the original ones; each PostgreSQL form gives the same values. -#}

{#- The value of `value` on the row with the smallest `order_by` in the group (DuckDB: arg_min). -#}
{% macro first_by(value, order_by) -%}{{ return(adapter.dispatch('first_by')(value, order_by)) }}{%- endmacro %}
{% macro default__first_by(value, order_by) -%}arg_min({{ value }}, {{ order_by }}){%- endmacro %}
{% macro postgres__first_by(value, order_by) -%}(array_agg({{ value }} order by {{ order_by }} asc))[1]{%- endmacro %}

{#- ... with the largest `order_by` (DuckDB: arg_max). -#}
{% macro last_by(value, order_by) -%}{{ return(adapter.dispatch('last_by')(value, order_by)) }}{%- endmacro %}
{% macro default__last_by(value, order_by) -%}arg_max({{ value }}, {{ order_by }}){%- endmacro %}
{% macro postgres__last_by(value, order_by) -%}(array_agg({{ value }} order by {{ order_by }} desc))[1]{%- endmacro %}

{#- Seconds in an interval or since the epoch for a timestamp, as a double. -#}
{% macro epoch_seconds(expr) -%}{{ return(adapter.dispatch('epoch_seconds')(expr)) }}{%- endmacro %}
{% macro default__epoch_seconds(expr) -%}epoch({{ expr }}){%- endmacro %}
{% macro postgres__epoch_seconds(expr) -%}extract(epoch from {{ expr }})::double precision{%- endmacro %}

{#- `ts` truncated to a multiple of `width` (DuckDB's time_bucket origin: 2000-01-03 00:00 UTC). -#}
{% macro bucket(width, ts) -%}{{ return(adapter.dispatch('bucket')(width, ts)) }}{%- endmacro %}
{% macro default__bucket(width, ts) -%}time_bucket({{ width }}, {{ ts }}){%- endmacro %}
{% macro postgres__bucket(width, ts) -%}date_bin({{ width }}, {{ ts }}, timestamptz '2000-01-03 00:00:00+00'){%- endmacro %}

{#- Neither NaN nor ±infinity (PostgreSQL has no isfinite for double precision; its NaN equals itself). -#}
{% macro is_finite(expr) -%}{{ return(adapter.dispatch('is_finite')(expr)) }}{%- endmacro %}
{% macro default__is_finite(expr) -%}isfinite({{ expr }}){%- endmacro %}
{% macro postgres__is_finite(expr) -%}({{ expr }} not in ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8)){%- endmacro %}

{#- The product of `expr` over the group (DuckDB: product; PostgreSQL has no such aggregate: exp of the sum of logs;
    every value must be > 0). -#}
{% macro product(expr) -%}{{ return(adapter.dispatch('product')(expr)) }}{%- endmacro %}
{% macro default__product(expr) -%}product({{ expr }}){%- endmacro %}
{% macro postgres__product(expr) -%}exp(sum(ln({{ expr }}))){%- endmacro %}
