{#- Where DuckDB's SQL and Spark's differ, the models call these; each adapter gets its own body
    (dbt's adapter dispatch), so every model has one copy for both engines. -#}

{#- One row per day from start to end (both dates), as the column `day`. -#}
{% macro day_series(start, end) %}{{ return(adapter.dispatch('day_series', 'shoploop')(start, end)) }}{% endmacro %}

{% macro duckdb__day_series(start, end) -%}
cast(unnest(generate_series({{ start }}, {{ end }}, interval 1 day)) as date) as day
{%- endmacro %}

{% macro spark__day_series(start, end) -%}
explode(sequence(cast({{ start }} as date), cast({{ end }} as date), interval 1 day)) as day
{%- endmacro %}

{#- Calendar days from start to end (day boundaries crossed); null when either is null. -#}
{% macro days_between(start, end) %}{{ return(adapter.dispatch('days_between', 'shoploop')(start, end)) }}{% endmacro %}

{% macro duckdb__days_between(start, end) -%}
date_diff('day', {{ start }}, {{ end }})
{%- endmacro %}

{% macro spark__days_between(start, end) -%}
datediff({{ end }}, {{ start }})
{%- endmacro %}

{#- Text values of a group joined by sep, in the order given (an ORDER BY list). -#}
{% macro ordered_string_agg(expression, sep, order_by) %}{{ return(adapter.dispatch('ordered_string_agg', 'shoploop')(expression, sep, order_by)) }}{% endmacro %}

{% macro duckdb__ordered_string_agg(expression, sep, order_by) -%}
string_agg({{ expression }}, {{ sep }} order by {{ order_by }})
{%- endmacro %}

{% macro spark__ordered_string_agg(expression, sep, order_by) -%}
listagg({{ expression }}, {{ sep }}) within group (order by {{ order_by }})
{%- endmacro %}

{#- True where the text contains a match of the regular expression (write patterns without backslashes:
    the engines' string literals treat them differently). -#}
{% macro regex_contains(expression, pattern) %}{{ return(adapter.dispatch('regex_contains', 'shoploop')(expression, pattern)) }}{% endmacro %}

{% macro duckdb__regex_contains(expression, pattern) -%}
regexp_matches({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro spark__regex_contains(expression, pattern) -%}
({{ expression }} rlike '{{ pattern }}')
{%- endmacro %}

{#- A data test: no row's column contains a match of the pattern. -#}
{% test contains_no_match(model, column_name, pattern) %}
select * from {{ model }} where {{ column_name }} is not null and {{ regex_contains(column_name, pattern) }}
{% endtest %}
