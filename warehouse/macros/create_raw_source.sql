{#-
  Declares the raw CSV input as an external table, dropped and recreated on every run so that a
  new CTR_RAW_PATH is honoured. Every field is read as a string, positionally (header 'false'):
  header lines are recognised and applied per file in stg_raw_records, because each file may carry
  its own subset of deep features. Spark keeps the raw text of a record in `_corrupt_record` exactly
  when its field count differs from the schema's, which is how too few / too many fields are found.
  The path must be readable by the Spark executors (on a cluster: an HDFS URI).
-#}
{% macro raw_path() -%}
  {%- set path = var('raw_path', env_var('CTR_RAW_PATH', 'data/raw')) -%}
  {#- dbt runs inside warehouse/; relative local paths are taken from the repository root. -#}
  {%- if target.name == 'local' and not (path.startswith('/') or '://' in path) -%}
    {%- set path = '../' ~ path -%}
  {%- endif -%}
  {{- return(path) -}}
{%- endmacro %}

{% macro create_raw_source() -%}
  {%- if execute -%}
    {%- set relation = source('raw', 'impressions_csv') -%}
    {%- set columns = [] -%}
    {%- for name in raw_columns() -%}{%- do columns.append('c' ~ loop.index0 ~ ' string') -%}{%- endfor -%}
    {%- do run_query('create schema if not exists ' ~ relation.schema) -%}
    {%- do run_query('drop table if exists ' ~ relation) -%}
    {%- call statement('create_raw_source') -%}
      create table {{ relation }} ({{ columns | join(', ') }}, _corrupt_record string)
      using csv
      options (
        path '{{ raw_path() }}',
        pathGlobFilter '{{ var("raw_glob", env_var("CTR_RAW_GLOB", "*.csv")) }}',
        header 'false',
        multiLine 'true',
        quote '"',
        escape '"',
        mode 'PERMISSIVE',
        columnNameOfCorruptRecord '_corrupt_record'
      )
    {%- endcall -%}
  {%- endif -%}
{%- endmacro %}
