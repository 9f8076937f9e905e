{#- Column lists several models share, where DuckDB's `* exclude (...)` would have named what to leave
    out (Spark has no such star): written once here. -#}

{#- An item listing as cleaned in staging (stg_items' `cleaned`), optionally qualified by a table alias. -#}
{% macro item_listing_columns(alias=none) -%}
{%- set columns = ['item_id', 'title', 'description', 'brand', 'category_path', 'attributes', 'price', 'currency',
                   'image_url', 'rating', 'review_count', 'created_at', 'landed_on'] -%}
{%- for column in columns %}{{ alias ~ '.' if alias }}{{ column }}{{ ', ' if not loop.last }}{% endfor -%}
{%- endmacro %}
