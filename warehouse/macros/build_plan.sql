{#-
  What this run rebuilds. A build always leaves the warehouse equal to a full build of the files now
  under CTR_RAW_PATH; an incremental run gets there by rewriting only the partitions that change:

  - files (stg_raw_files): `new` or `changed` files (path, size or modification time differ from
    raw_file_audit) are parsed; records of `changed` and `removed` files are dropped (stale);
  - restaged dates: the days of records of parsed or stale files, whose staging partitions and
    daily aggregates are rewritten;
  - rebuild_from: the first restaged day (at most the day after the last day with data): every
    feature, training and snapshot row from that day on is recomputed, because cumulative features
    of later days depend on it. A late day is therefore rebuilt from that day forward.

  The models read the plan here at execution time and inline it as literals, so Spark prunes files
  and partitions statically. At parse time (execute false) the plan is empty. `nothing_new`: no
  file is new, changed or removed, so every table already equals a full build and no model runs.
-#}

{#- The previous version of a model of this schema, or none (first build, or --full-refresh). -#}
{% macro previous_relation(name) -%}
  {%- if not execute or flags.FULL_REFRESH -%}{{ return(none) }}{%- endif -%}
  {{- return(adapter.get_relation(database=none, schema=target.schema, identifier=name)) -}}
{%- endmacro %}

{#-
  A model of the plan: ref() in models (dbt orders them after it), the relation itself where a
  ref would add a dependency (data tests scoped by get_where_subquery).
-#}
{% macro plan_model(name, direct) -%}
  {%- if direct -%}
    {{- return(api.Relation.create(schema=target.schema, identifier=name, type='table')) -}}
  {%- endif -%}
  {{- return(ref(name)) -}}
{%- endmacro %}

{#- The files of this run, from stg_raw_files. `full`: nothing is kept from an earlier build. -#}
{% macro file_plan(direct=false) -%}
  {{- return(read_plan(direct, with_dates=false)) -}}
{%- endmacro %}

{#- The file plan plus the days of this run, from stg_build_dates (dates as 'YYYY-MM-DD' strings). -#}
{% macro build_plan(direct=false) -%}
  {{- return(read_plan(direct, with_dates=true)) -}}
{%- endmacro %}

{#- The plan before any row is read (parse time, or a model selected without the plan models). -#}
{% macro empty_plan() -%}
  {{- return({'full': true, 'nothing_new': false, 'batch_files': [], 'batch_paths': [], 'stale_files': [],
              'kept_files': [], 'kept_dates': {}, 'restaged': [], 'live': [], 'all_dates': [],
              'rebuilt': [], 'rebuilt_or_gone': [], 'covering_files': [], 'last_date': none,
              'as_of': none, 'rebuild_from': none, 'window_from': none}) -}}
{%- endmacro %}

{#-
  One small query for the whole plan, once per run: the plan is kept in the run's graph (one object
  for every node of this invocation), since stg_raw_files and stg_build_dates do not change after
  the first node that reads them.
-#}
{% macro read_plan(direct, with_dates) -%}
  {#- The refs come first: at parse time they make dbt order the model after the plan models. -#}
  {%- set files_model = plan_model('stg_raw_files', direct) -%}
  {%- set dates_model = plan_model('stg_build_dates', direct) if with_dates else none -%}
  {%- set plan = empty_plan() -%}
  {%- if not execute -%}{{ return(plan) }}{%- endif -%}
  {%- set cache_key = 'm2ctr_plan/' ~ invocation_id ~ '/' ~ target.schema ~ '/' ~ with_dates -%}
  {%- if cache_key in graph -%}{{ return(graph[cache_key]) }}{%- endif -%}
  {%- set query -%}
    select 'file', source_file, file_path, status,
        array_join(transform(previous_dates, d -> cast(d as string)), ','), null, null
    from {{ files_model }}
    {%- if with_dates %}
    union all
    select 'date', cast(date as string), null, null, null, restaged, live
    from {{ dates_model }}
    {%- endif %}
  {%- endset -%}
  {%- for row in run_query(query).rows | sort(attribute='1') -%}
    {%- if row[0] == 'file' -%}{%- do plan_file(plan, row[1], row[2], row[3], row[4]) -%}
    {%- else -%}{%- do plan_date(plan, row[1], row[5], row[6]) -%}
    {%- endif -%}
  {%- endfor -%}
  {%- do plan.update({'full': not plan.kept_files and not plan.stale_files,
                      'nothing_new': not plan.batch_files and not plan.stale_files and plan.kept_files | length > 0}) -%}
  {%- if with_dates -%}{%- do plan_days(plan) -%}{%- endif -%}
  {%- do graph.update({cache_key: plan}) -%}
  {{- return(plan) -}}
{%- endmacro %}

{#- A file of the plan: parsed (new, changed), dropped (changed, removed) or kept (unchanged). -#}
{% macro plan_file(plan, source_file, path, status, previous_dates) -%}
  {%- if status in ('new', 'changed') -%}
    {%- do plan.batch_files.append(source_file) -%}
    {%- do plan.batch_paths.append(path) -%}
  {%- endif -%}
  {%- if status in ('changed', 'removed') -%}{%- do plan.stale_files.append(source_file) -%}{%- endif -%}
  {%- if status == 'unchanged' -%}
    {%- do plan.kept_files.append(source_file) -%}
    {%- do plan.kept_dates.update({source_file: (previous_dates or '').split(',')}) -%}
  {%- endif -%}
{%- endmacro %}

{% macro plan_date(plan, date, restaged, live) -%}
  {%- do plan.all_dates.append(date) -%}
  {%- if restaged -%}{%- do plan.restaged.append(date) -%}{%- endif -%}
  {%- if live -%}{%- do plan.live.append(date) -%}{%- endif -%}
{%- endmacro %}

{#-
  The days of the plan: as_of (the day after the last live day), rebuild_from (the first restaged
  day, at most as_of), window_from (window_days before it: the short windows of rebuild_from reach
  back that far), the days rebuilt, and the files whose records the restaged days need.
-#}
{% macro plan_days(plan) -%}
  {%- set one_day = modules.datetime.timedelta(days=1) -%}
  {%- if plan.live -%}
    {%- set as_of = (modules.datetime.date.fromisoformat(plan.live[-1]) + one_day) | string -%}
    {%- set rebuild_from = [plan.restaged[0] if plan.restaged else as_of, as_of] | min -%}
    {%- set window_from = (modules.datetime.date.fromisoformat(rebuild_from) - window_days() * one_day) | string -%}
    {%- do plan.update({'last_date': plan.live[-1], 'as_of': as_of, 'rebuild_from': rebuild_from,
                        'window_from': window_from}) -%}
  {%- elif plan.restaged -%}
    {%- do plan.update({'rebuild_from': plan.restaged[0]}) -%}
  {%- endif -%}
  {%- for d in plan.all_dates if plan.rebuild_from is not none and d >= plan.rebuild_from -%}
    {%- do plan.rebuilt_or_gone.append(d) -%}
    {%- if d in plan.live -%}{%- do plan.rebuilt.append(d) -%}{%- endif -%}
  {%- endfor -%}
  {%- set covering = plan.batch_files[:] -%}
  {%- for f in plan.kept_files if plan.kept_dates[f] | select('in', plan.restaged) | list -%}
    {%- do covering.append(f) -%}
  {%- endfor -%}
  {%- do plan.update({'covering_files': covering | sort}) -%}
{%- endmacro %}

{#- A date literal from 'YYYY-MM-DD', or null. -#}
{% macro date_literal(value) -%}
  {%- if value -%}date'{{ value }}'{%- else -%}cast(null as date){%- endif -%}
{%- endmacro %}

{% macro date_literals(values) -%}
  {%- for v in values -%}date'{{ v }}'{{ ', ' if not loop.last }}{%- endfor -%}
{%- endmacro %}

{#- `expr in (values)` as SQL: true when the whole input is rebuilt (full), false when values is empty. -#}
{% macro in_list(expr, values, full=false, dates=false) -%}
  {%- if full -%}true
  {%- elif not values -%}false
  {%- elif dates -%}{{ expr }} in ({{ date_literals(values) }})
  {%- else -%}{{ expr }} in ({%- for v in values -%}{{ sql_string(v) }}{{ ', ' if not loop.last }}{%- endfor -%})
  {%- endif -%}
{%- endmacro %}

{#-
  The partitions a model rewrites, by its `partition_scope` (meta), with the filter that selects
  them. `files`: partitioned by source_file, the parsed files are written and the stale ones dropped.
  `restaged`: by date, the restaged days. `rebuilt`: by date, every day from rebuild_from on.
-#}
{% macro partition_scope(scope, direct=false) -%}
  {%- if scope == 'files' -%}
    {%- set plan = file_plan(direct) -%}
    {{- return({'column': 'source_file', 'dates': false, 'full': plan.full,
                'drop': plan.stale_files, 'keep': plan.batch_files}) -}}
  {%- elif scope in ('restaged', 'rebuilt') -%}
    {%- set plan = build_plan(direct) -%}
    {%- if scope == 'restaged' -%}
      {{- return({'column': 'date', 'dates': true, 'full': plan.full, 'drop': plan.restaged,
                  'keep': plan.restaged | select('in', plan.live) | list}) -}}
    {%- else -%}
      {{- return({'column': 'date', 'dates': true, 'full': plan.full, 'drop': plan.rebuilt_or_gone,
                  'keep': plan.rebuilt}) -}}
    {%- endif -%}
  {%- endif -%}
  {{- return(none) -}}
{%- endmacro %}

{#- Pre-hook of every incremental model: drop the partitions this run replaces or empties. -#}
{% macro drop_replaced_partitions() -%}
  {%- if not execute -%}{{ return('') }}{%- endif -%}
  {%- set scope = (config.get('meta') or {}).get('partition_scope') -%}
  {%- if scope and is_incremental() -%}
    {%- set part = partition_scope(scope) -%}
    {%- for chunk in part.drop | batch(500) -%}
      {%- call statement('drop_partitions') -%}
        alter table {{ this }} drop if exists
        {%- for v in chunk %}
          partition ({{ part.column }} = {{ sql_string(v) }}){{ ',' if not loop.last }}
        {%- endfor %}
      {%- endcall -%}
    {%- endfor -%}
  {%- endif -%}
{%- endmacro %}

{#-
  Source files with records in stg_raw_records (the previous one) that raw_file_audit does not list:
  staged by a build that did not finish. Read from the partition names, not from the data.
-#}
{% macro unfinished_files(records, audit) -%}
  {%- if not execute or records is none -%}{{ return([]) }}{%- endif -%}
  {%- set described = run_query('describe table ' ~ records).rows | map(attribute='0') | list -%}
  {%- if '# Partition Information' not in described or 'source_file' not in described[described.index('# Partition Information'):] -%}
    {{ exceptions.raise_compiler_error('m2ctr: ' ~ records ~ ' was built by an earlier, non-incremental version of the warehouse; rebuild it once with `make features-full-refresh` (dbt build --full-refresh)') }}
  {%- endif -%}
  {%- set audited = [] -%}
  {%- if audit is not none -%}
    {%- for row in run_query('select source_file from ' ~ audit).rows -%}{%- do audited.append(row[0]) -%}{%- endfor -%}
  {%- endif -%}
  {%- set unfinished = [] -%}
  {%- for row in run_query('show partitions ' ~ records).rows -%}
    {%- set name = hive_unescape(row[0][('source_file=' | length):]) -%}
    {%- if name not in audited -%}{%- do unfinished.append(name) -%}{%- endif -%}
  {%- endfor -%}
  {{- return(unfinished) -}}
{%- endmacro %}

{#- A partition value as written in a Hive partition path (the characters Hive escapes), decoded. -#}
{% macro hive_unescape(name) -%}
  {{- return(name.replace('%22', '"').replace('%23', '#').replace('%27', "'").replace('%2A', '*')
                 .replace('%2F', '/').replace('%3A', ':').replace('%3D', '=').replace('%3F', '?')
                 .replace('%5B', '[').replace('%5C', '\\').replace('%5D', ']').replace('%5E', '^')
                 .replace('%7B', '{').replace('%25', '%')) -}}
{%- endmacro %}
