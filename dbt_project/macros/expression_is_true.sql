{#- Vendored from dbt-utils' expression_is_true: `dbt deps` cannot reach the hub offline. -#}
{% test dbt_utils_expression(model, column_name=None, expression=None) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}
