{#-
  A run with nothing new (no raw file new, changed or removed: the plan's `nothing_new`) leaves
  every table as it is, since each already equals a full build of the files present. The models
  that describe the run itself (which files, which days) are rebuilt; every other model returns
  without a query, and every data test passes without one: there is no row it has not checked.
-#}

{#- The models that describe the run: rebuilt on every run, nothing new or not. -#}
{% macro run_plan_models() -%}
  {{- return(['stg_raw_files', 'stg_build_dates']) -}}
{%- endmacro %}

{#- Whether this run leaves the model `name` as it is (a run with nothing new). -#}
{% macro kept_as_is(name) -%}
  {%- if not execute or flags.FULL_REFRESH or name in run_plan_models() -%}{{ return(false) }}{%- endif -%}
  {{- return(file_plan(direct=true).nothing_new) -}}
{%- endmacro %}

{#- Whether the data test `node` has no new row to check: a run with nothing new, and the test
    reads no model of the run's plan (those are rebuilt, and tested, on every run). -#}
{% macro nothing_to_test(node) -%}
  {%- if not execute or flags.FULL_REFRESH -%}{{ return(false) }}{%- endif -%}
  {%- for parent in node.depends_on.nodes if parent.split('.')[-1] in run_plan_models() -%}
    {{- return(false) -}}
  {%- endfor -%}
  {{- return(file_plan(direct=true).nothing_new) -}}
{%- endmacro %}

{#- dbt requires a `main` statement of every model: a constant, which Spark answers without a job. -#}
{% macro keep_as_is() -%}
  {%- call statement('main') -%}select 'kept as is: nothing new' as status{%- endcall -%}
  {{- return({'relations': [this]}) -}}
{%- endmacro %}

{% materialization incremental, adapter='spark', supported_languages=['sql'] -%}
  {%- if kept_as_is(this.identifier) -%}{{ return(keep_as_is()) }}{%- endif -%}
  {{- return(dbt.materialization_incremental_spark()) -}}
{%- endmaterialization %}

{% materialization table, adapter='spark', supported_languages=['sql'] -%}
  {%- if kept_as_is(this.identifier) -%}{{ return(keep_as_is()) }}{%- endif -%}
  {{- return(dbt.materialization_table_spark()) -}}
{%- endmaterialization %}

{#- A data test on a run with nothing new: no failure, answered by a constant (no Spark job, no
    table read), instead of its query over no row. -#}
{% materialization test, adapter='spark' -%}
  {%- if nothing_to_test(model) -%}
    {%- call statement('main', fetch_result=True) -%}
      select 0 as failures, false as should_warn, false as should_error
    {%- endcall -%}
    {{- return({'relations': []}) -}}
  {%- endif -%}
  {{- return(dbt.materialization_test_default()) -}}
{%- endmaterialization %}
