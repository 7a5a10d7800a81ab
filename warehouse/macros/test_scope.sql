{#-
  Data tests of an incremental model look at the partitions this run wrote, not at all of history:
  dbt wraps the tested relation of every generic test in get_where_subquery, and this project's
  version adds the model's partition filter (its `partition_scope`, see build_plan.sql) to any
  `where` config. On a full build the filter is dropped and the whole table is tested; on a run with
  nothing new no row is tested.
-#}
{% macro get_where_subquery(relation) -%}
  {%- set filters = [] -%}
  {%- set where = config.get('where', '') -%}
  {%- if where -%}{%- do filters.append('(' ~ where ~ ')') -%}{%- endif -%}
  {%- set scope = tested_partition_scope(relation) -%}
  {%- if kept_as_is(relation.identifier) -%}
    {#- Nothing new: the table is as the last build left it, already tested. -#}
    {%- do filters.append('false') -%}
  {%- elif scope -%}
    {%- set part = partition_scope(scope, direct=true) -%}
    {%- if not part.full -%}
      {%- do filters.append(in_list(part.column, part.keep, dates=part.dates)) -%}
    {%- endif -%}
  {%- endif -%}
  {%- if filters -%}
    {%- set filtered -%}
      (select * from {{ relation }} where {{ filters | join(' and ') }}) dbt_subquery
    {%- endset -%}
    {{- return(filtered) -}}
  {%- endif -%}
  {{- return(relation) -}}
{%- endmacro %}

{#- The partition_scope of the model a relation belongs to (from the graph, at execution). -#}
{% macro tested_partition_scope(relation) -%}
  {%- if execute -%}
    {%- for node in graph.nodes.values() -%}
      {%- if node.resource_type == 'model' and node.alias == relation.identifier -%}
        {{- return(node.config.meta.get('partition_scope')) -}}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{- return(none) -}}
{%- endmacro %}

{#-
  The keys of `model` (a ref) that are repeated or null, in the rows this run wrote: the query of a
  one-row-per-key test that checks several tables at once, each failing key named with its table.
  nullable: a null key is allowed (the snapshot rows for an id without history).
-#}
{% macro repeated_keys(model, keys, nullable=false) -%}
    select
        '{{ model.identifier }}' as model,
        concat_ws(', ', {% for k in keys %}'{{ k }}=' || coalesce(cast({{ k }} as string), 'null'){{ ', ' if not loop.last }}{% endfor %}) as key,
        count(*) as n_rows
    from {{ get_where_subquery(model) }}
    group by {{ keys | join(', ') }}
    having count(*) > 1
    {%- if not nullable %}
    {%- for k in keys %}
        or {{ k }} is null
    {%- endfor %}
    {%- endif %}
{%- endmacro %}
