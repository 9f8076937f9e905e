{#- Incremental staging over the append-only landing zone. A build reads only the landing files the
    table has not seen (DuckDB's `filename` column becomes source_file); after it, rows whose file
    is gone are dropped, because a reloaded partition lands under a new, content-derived name. -#}

{% macro only_unseen_landing_files() %}
{%- if is_incremental() %}
{%- if 'source_file' not in (adapter.get_columns_in_relation(this) | map(attribute='name') | list) %}
{{ exceptions.raise_compiler_error(this.identifier ~ " was built before incremental builds: run `shoploop transform --full-refresh` once") }}
{%- endif %}
where filename not in (select distinct source_file from {{ this }})
{%- endif %}
{% endmacro %}

{% macro drop_rows_of_vanished_files(table) %}
delete from {{ this }} where source_file not in (
    select file from glob('{{ env_var("SHOPLOOP_HOME") }}/landing/{{ table }}/dt=*/*.parquet'))
{% endmacro %}

{#- The config of a staging model over an append-only landing table. On DuckDB it is incremental (the
    new files only, delete+insert on the key). On Spark the parquet tables dbt-spark writes have no
    delete+insert by key (that needs Delta or Iceberg, not in the pyspark wheel): staging is rebuilt
    whole, in parallel over every landing file, and gives the same rows. -#}
{% macro append_only_staging(unique_key, table) %}
{%- if target.type == 'duckdb' -%}
{%- do return({'materialized': 'incremental', 'unique_key': unique_key, 'incremental_strategy': 'delete+insert',
               'post_hook': "{{ drop_rows_of_vanished_files('" ~ table ~ "') }}"}) -%}
{%- else -%}
{%- do return({'materialized': 'table'}) -%}
{%- endif -%}
{% endmacro %}
