{#-
  Point-in-time features of one entity (user or item), one macro for the daily mart and for the
  serving snapshot, so that both describe an entity the same way.

  Input: the entity's state at the start of rebuild_from (int_*_state: totals, first and last day
  with history) and its daily aggregates from rebuild_from - 7 (the 7-day windows reach back that
  far) to the last day with data. The state is laid out as one row on the day before rebuild_from;
  days before rebuild_from feed the 7-day windows only (the state already holds them), later days
  feed both. The windows range over day numbers, so 7d is calendar days D-7..D-1 whatever days are
  missing, and the current day (including the row's own label) is never inside a window.

  Query rows, where features are read off: as_of=false, every day from rebuild_from on with
  impressions of the entity (the mart); as_of=true, every entity on the day after the last day with
  data (the snapshot; the windows are then aggregates per entity, see over_frame). On a full build
  the state is empty and every day is a query day.
-#}
{% macro entity_history(daily_model, state_model, key, prefix, as_of=false) %}
{%- set plan = build_plan() -%}
{%- set start = date_literal(plan.rebuild_from) -%}
{%- set as_of_date = date_literal(plan.as_of) -%}
{%- set query_day = as_of_date if as_of else none -%}
with {{ history_inputs(daily_model, state_model, plan.window_from, plan.last_date) }},

{%- if not as_of %}

active as (

    select distinct {{ key }} from daily where date >= {{ start }}

),
{%- endif %}

timeline as (

    select
        state.{{ key }},
        unix_date({{ start }}) - 1 as day_number,
        cast(null as date) as date,
        false as is_query,
        cast(0 as bigint) as imp_in_7d,
        cast(0 as bigint) as clk_in_7d,
        state.imp as imp_in_cum,
        state.clk as clk_in_cum,
        {%- for s in scenes() %}
        state.imp_s{{ s }} as imp_in_cum_s{{ s }},
        state.clk_s{{ s }} as clk_in_cum_s{{ s }},
        {%- endfor %}
        state.first_date as first_in,
        state.last_date as last_in
    from state
    {%- if not as_of %}
    left semi join active on state.{{ key }} = active.{{ key }}
    {%- endif %}

    union all

    select
        {{ key }},
        day_number,
        date,
        {{ 'false' if as_of else 'date >= ' ~ start }} as is_query,
        imp,
        clk,
        if(date >= {{ start }}, imp, 0),
        if(date >= {{ start }}, clk, 0),
        {%- for s in scenes() %}
        if(date >= {{ start }}, imp_s{{ s }}, 0),
        if(date >= {{ start }}, clk_s{{ s }}, 0),
        {%- endfor %}
        if(date >= {{ start }}, date, null),
        if(date >= {{ start }}, date, null)
    from daily

),

windowed as (

    select
        {{ key }},
        {{ as_of_date if as_of else 'date' }} as date,
        {{ 'true' if as_of else 'is_query' }} as is_query,
        {{ over_frame('sum', 'imp_in_7d', 'last_7_days', query_day) }} as imp_7d,
        {{ over_frame('sum', 'clk_in_7d', 'last_7_days', query_day) }} as clk_7d,
        {{ over_frame('sum', 'imp_in_cum', 'before_day', query_day) }} as imp_cum,
        {{ over_frame('sum', 'clk_in_cum', 'before_day', query_day) }} as clk_cum,
        {%- for s in scenes() %}
        {{ over_frame('sum', 'imp_in_cum_s' ~ s, 'before_day', query_day) }} as imp_cum_s{{ s }},
        {{ over_frame('sum', 'clk_in_cum_s' ~ s, 'before_day', query_day) }} as clk_cum_s{{ s }},
        {%- endfor %}
        {{ over_frame('min', 'first_in', 'before_day', query_day) }} as first_hist_date,
        {{ over_frame('max', 'last_in', 'before_day', query_day) }} as last_hist_date
    from timeline
    {%- if as_of %}
    group by {{ key }}
    {%- else %}
    window
        last_7_days as (
            partition by {{ key }} order by day_number
            range between 7 preceding and 1 preceding
        ),
        before_day as (
            partition by {{ key }} order by day_number
            range between unbounded preceding and 1 preceding
        )
    {%- endif %}

),

final as (

    select
        {{ key }},
        coalesce(imp_7d, 0) as {{ prefix }}_imp_7d,
        coalesce(clk_7d, 0) as {{ prefix }}_clk_7d,
        case when imp_7d > 0 then clk_7d / imp_7d else 0.0 end as {{ prefix }}_ctr_7d,
        coalesce(imp_cum, 0) as {{ prefix }}_imp_cum,
        coalesce(clk_cum, 0) as {{ prefix }}_clk_cum,
        case when imp_cum > 0 then clk_cum / imp_cum else 0.0 end as {{ prefix }}_ctr_cum,
        {%- for s in scenes() %}
        coalesce(imp_cum_s{{ s }}, 0) as {{ prefix }}_imp_cum_s{{ s }},
        coalesce(clk_cum_s{{ s }}, 0) as {{ prefix }}_clk_cum_s{{ s }},
        {%- endfor %}
        coalesce(datediff(date, first_hist_date), 0) as {{ prefix }}_days_since_first,
        case when last_hist_date is not null then 1 else 0 end as {{ prefix }}_has_history,
        last_hist_date as {{ prefix }}_last_hist_date,
        date
    from windowed
    where is_query

)

select * from final
{% endmacro %}


{#-
  The entity's state at the start of rebuild_from: totals over all earlier days, and its first and
  last day with impressions. Carried forward from the previous snapshot (the state at the start of
  its `date`) plus the daily aggregates from that day on, when nothing before that day changed;
  otherwise (a late or re-delivered day, or no snapshot) summed from the daily aggregates before
  rebuild_from.
-#}
{% macro entity_state(daily_model, snapshot_model, key, prefix) %}
{%- set carry = carried_snapshot(snapshot_model, 'scene = ' ~ scenes()[0]) -%}
{%- set totals = [('imp', 'sum'), ('clk', 'sum')] -%}
{%- for s in scenes() -%}{%- do totals.extend([('imp_s' ~ s, 'sum'), ('clk_s' ~ s, 'sum')]) -%}{%- endfor -%}
{%- do totals.extend([('first_date', 'min'), ('last_date', 'max')]) -%}
with {{ daily_input(daily_model, carry.since, carry.until, below_end=true) }},

carried as (
    {%- if carry.snapshot %}

    select
        {{ key }},
        {{ prefix }}_imp_cum as imp,
        {{ prefix }}_clk_cum as clk,
        {%- for s in scenes() %}
        {{ prefix }}_imp_cum_s{{ s }} as imp_s{{ s }},
        {{ prefix }}_clk_cum_s{{ s }} as clk_s{{ s }},
        {%- endfor %}
        date_sub(date, {{ prefix }}_days_since_first) as first_date,
        {{ prefix }}_last_hist_date as last_date
    from {{ carry.snapshot }}
    where scene = {{ scenes()[0] }} and {{ key }} is not null and {{ prefix }}_has_history = 1

    union all
    {%- endif %}

    select
        {{ key }},
        imp,
        clk,
        {%- for s in scenes() %}
        imp_s{{ s }},
        clk_s{{ s }},
        {%- endfor %}
        date as first_date,
        date as last_date
    from daily

),

{{ state_totals(carry, [key], totals) }}

select * from final
{% endmacro %}


{#-
  An aggregate over a frame of a history timeline: `fn(column) over frame` on every row. With
  query_day (the snapshot: one query row per key, on the day after every day of the timeline) each
  frame of that row holds every row of the key (last_7_days: those of the 7 days before it), so a
  plain aggregate grouped by the key gives the same value, without a sort or any query rows.
-#}
{% macro over_frame(fn, column, frame, query_day=none) -%}
  {%- if query_day is none -%}{{ fn }}({{ column }}) over {{ frame }}
  {%- elif frame == 'last_7_days' -%}{{ fn }}(if(day_number >= unix_date({{ query_day }}) - 7, {{ column }}, null))
  {%- else -%}{{ fn }}({{ column }})
  {%- endif -%}
{%- endmacro %}


{#-
  The inputs of a history macro as two CTEs: `daily`, the daily aggregates with start <= date <= end,
  and `state`, the state at the start of rebuild_from.
-#}
{% macro history_inputs(daily_model, state_model, start, end) -%}
{{ daily_input(daily_model, start, end) }},

state as (

    select * from {{ ref(state_model) }}

)
{%- endmacro %}


{#- The CTE `daily`: the daily aggregates with start <= date <= end (< end with below_end). -#}
{% macro daily_input(daily_model, start, end, below_end=false) -%}
daily as (

    select * from {{ ref(daily_model) }}
    where {{ date_range('date', start, end, below_end=below_end) }}

)
{%- endmacro %}


{#-
  What a state macro sums: `snapshot`, the previous snapshot when nothing before its as-of day is
  rebuilt (else none), plus the daily aggregates of days `since` (its as-of day; none: from the
  first day) to before `until` (rebuild_from); `alone`: there are no such days (the daily run
  after the snapshot's last day), the state is the snapshot's rows as they are.
-#}
{% macro carried_snapshot(snapshot_model, where='true') -%}
  {%- set plan = build_plan() -%}
  {%- set snapshot = previous_relation(snapshot_model) -%}
  {%- set as_of = snapshot_date(snapshot, where) -%}
  {%- if as_of is not none and plan.rebuild_from is not none and plan.rebuild_from >= as_of -%}
    {{- return({'snapshot': snapshot, 'since': as_of, 'until': plan.rebuild_from,
                'alone': as_of == plan.rebuild_from}) -}}
  {%- endif -%}
  {{- return({'snapshot': none, 'since': none, 'until': plan.rebuild_from, 'alone': false}) -}}
{%- endmacro %}


{#-
  The CTE `final` of a state macro: the rows of `carried` summed per key, each (column, aggregate)
  of `totals`; the rows as they are when the snapshot alone is carried (one row per key already,
  so no shuffle of every key).
-#}
{% macro state_totals(carry, keys, totals) -%}
final as (
    {%- if carry.alone %}

    select * from carried
    {%- else %}

    select
        {{ keys | join(',\n        ') }},
        {%- for column, fn in totals %}
        {{ fn }}({{ column }}) as {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from carried
    group by {{ keys | join(', ') }}
    {%- endif %}

)
{%- endmacro %}


{#- The as-of day of a previous snapshot ('YYYY-MM-DD'), or none when there is none or it is empty. -#}
{% macro snapshot_date(relation, where='true') -%}
  {%- if not execute or relation is none -%}{{ return(none) }}{%- endif -%}
  {%- set rows = run_query('select cast(max(date) as string) from ' ~ relation ~ ' where ' ~ where).rows -%}
  {{- return(rows[0][0] if rows and rows[0][0] else none) -}}
{%- endmacro %}


{#- `start <= expr <= end` (or `< end` with below_end) over dates given as strings; none = open. -#}
{% macro date_range(expr, start, end, below_end=false) -%}
  {%- set parts = [] -%}
  {%- if start -%}{%- do parts.append(expr ~ " >= date'" ~ start ~ "'") -%}{%- endif -%}
  {%- if end -%}{%- do parts.append(expr ~ (" < " if below_end else " <= ") ~ "date'" ~ end ~ "'") -%}{%- endif -%}
  {%- if execute and not end -%}false{%- else -%}{{ parts | join(' and ') if parts else 'true' }}{%- endif -%}
{%- endmacro %}
