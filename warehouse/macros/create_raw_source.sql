{#-
  Declares the raw input as external tables, dropped and recreated on every run so that a new
  CTR_RAW_PATH is honoured. The path must be readable by the Spark executors (on a cluster: an HDFS
  URI). Files are found recursively, so `date=YYYY-MM-DD/` folders and flat files work side by side
  (folder names are not parsed: a record's day is its log_time).

  The file glob and the CSV options are the vars raw_glob and raw_csv_options (dbt_project.yml),
  which the raw suite of expectations/ reads too.

  raw_impressions_csv: every field a string, positionally (header 'false'): header lines are
    recognised and applied per file in stg_raw_records, because each file may carry its own subset
    of deep features. Spark keeps the raw text of a record in `_corrupt_record` exactly when its
    field count differs from the schema's, which is how too few / too many fields are found.
    `.gz` / `.bz2` parts are decompressed by Spark like any Hadoop input.
  raw_csv_lines: the same files as plain lines, read only to find header lines. Finding a file's
    header among its parsed records needs a pass over all of them, ordered within the file; a
    line scan is splittable and costs a few per cent of the parse.
  raw_files / raw_csv_files: file listings (path, size, modification time; contents are never
    read) of every file under the path and of the files raw_impressions_csv reads. Their difference
    is warned about, file by file, so no input is dropped without a word.
-#}
{% macro raw_path() -%}
  {%- set path = var('raw_path', env_var('CTR_RAW_PATH', 'data/raw')) -%}
  {#- dbt runs inside warehouse/; relative local paths are taken from the repository root. -#}
  {%- if target.name == 'local' and not (path.startswith('/') or '://' in path) -%}
    {%- set path = '../' ~ path -%}
  {%- endif -%}
  {{- return(path) -}}
{%- endmacro %}

{#- Which file names are read: var raw_glob (dbt_project.yml), unless CTR_RAW_GLOB says otherwise. -#}
{% macro raw_glob() -%}
  {{- return(env_var('CTR_RAW_GLOB', '') or var('raw_glob')) -}}
{%- endmacro %}

{#- A Spark SQL string literal (Spark reads backslash escapes inside quotes). -#}
{% macro sql_string(value) -%}
  '{{ value | string | replace("\\", "\\\\") | replace("'", "\\'") }}'
{%- endmacro %}

{% macro create_raw_source() -%}
  {%- if execute -%}
    {%- set csv_relation = source('raw', 'impressions_csv') -%}
    {%- set columns = [] -%}
    {%- for name in raw_columns() -%}{%- do columns.append('c' ~ loop.index0 ~ ' string') -%}{%- endfor -%}
    {#- The Hive metastore (Derby) fails on filters of date-typed partitions: let Spark prune them
        from the partition names instead. -#}
    {%- do run_query('set spark.sql.hive.metastorePartitionPruningFallbackOnException = true') -%}
    {%- do run_query('set spark.sql.hive.metastorePartitionPruningFastFallback = true') -%}
    {%- do run_query('create schema if not exists ' ~ csv_relation.schema) -%}
    {%- do run_query('drop table if exists ' ~ csv_relation) -%}
    {%- call statement('create_raw_source') -%}
      create table {{ csv_relation }} ({{ columns | join(', ') }}, _corrupt_record string)
      using csv
      options (
        path {{ sql_string(raw_path()) }},
        pathGlobFilter {{ sql_string(raw_glob()) }},
        recursiveFileLookup 'true',
        {%- for option, value in var('raw_csv_options').items() %}
        {{ option }} {{ sql_string(value) }},
        {%- endfor %}
        header 'false',
        columnNameOfCorruptRecord '_corrupt_record'
      )
    {%- endcall -%}
    {%- set lines_relation = source('raw', 'csv_lines') -%}
    {%- do run_query('drop table if exists ' ~ lines_relation) -%}
    {%- call statement('create_raw_lines') -%}
      create table {{ lines_relation }} (value string)
      using text
      options (
        path {{ sql_string(raw_path()) }},
        pathGlobFilter {{ sql_string(raw_glob()) }},
        recursiveFileLookup 'true'
      )
    {%- endcall -%}
    {%- for name, glob in [('files', none), ('csv_files', raw_glob())] -%}
      {%- set relation = source('raw', name) -%}
      {%- do run_query('drop table if exists ' ~ relation) -%}
      {%- call statement('create_raw_listing') -%}
        create table {{ relation }}
        using binaryFile
        options (
          path {{ sql_string(raw_path()) }},
          {%- if glob %}
          pathGlobFilter {{ sql_string(glob) }},
          {%- endif %}
          recursiveFileLookup 'true'
        )
      {%- endcall -%}
    {%- endfor -%}
    {{ warn_unread_raw_files() }}
  {%- endif -%}
{%- endmacro %}

{#- One warning per file under CTR_RAW_PATH that the build does not read, naming it. -#}
{% macro warn_unread_raw_files() -%}
  {%- set unread = run_query(
      'select listed.path from ' ~ source('raw', 'files') ~ ' as listed'
      ~ ' left anti join ' ~ source('raw', 'csv_files') ~ ' as csv on listed.path = csv.path'
      ~ ' order by listed.path') -%}
  {%- for row in unread.rows -%}
    {%- do exceptions.warn('m2ctr: not read, the name does not match ' ~ raw_glob() ~ ': ' ~ row[0]) -%}
  {%- endfor -%}
{%- endmacro %}

{#- The URI under which Spark lists the raw input (a directory, or the single file given). -#}
{% macro raw_root_uri() -%}
  {%- set found = [] -%}
  {%- if execute -%}
    {%- for row in run_query('describe table extended ' ~ source('raw', 'files')).rows -%}
      {%- if row[0] == 'Location' -%}{%- do found.append(row[1]) -%}{%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{- return(found[0] if found else none) -}}
{%- endmacro %}

{#- A raw log_time as a timestamp: the first of var log_time_formats it matches, else null. -#}
{% macro parse_log_time(expr) -%}
  coalesce(
      {%- for format in var('log_time_formats') %}
      try_to_timestamp(trim({{ expr }}), {{ sql_string(format) }}){{ ',' if not loop.last }}
      {%- endfor %}
  )
{%- endmacro %}
