{#-
  History of a (user, item) pair, for the daily mart (as_of=false: every day from rebuild_from on
  with impressions of the pair) and the serving snapshot (as_of=true: every pair on the day after the
  last day with data). As in entity_history: the pair's state at the start of rebuild_from is one row
  on the day before it, and a window over day numbers never includes the current day (for the
  snapshot an aggregate per pair, see over_frame).
-#}
{% macro pair_history(daily_model, state_model, as_of=false) %}
{%- set plan = build_plan() -%}
{%- set start = date_literal(plan.rebuild_from) -%}
{%- set as_of_date = date_literal(plan.as_of) -%}
{%- set query_day = as_of_date if as_of else none -%}
with {{ history_inputs(daily_model, state_model, plan.rebuild_from, plan.last_date) }},

timeline as (

    select
        state.user_id,
        state.item_id,
        unix_date({{ start }}) - 1 as day_number,
        cast(null as date) as date,
        false as is_query,
        state.imp,
        state.clk,
        state.last_date as last_in
    from state
    {%- if not as_of %}
    left semi join daily
        on state.user_id = daily.user_id
        and state.item_id = daily.item_id
    {%- endif %}

    union all

    select user_id, item_id, day_number, date, {{ 'false' if as_of else 'true' }}, imp, clk, date
    from daily

),

windowed as (

    select
        user_id,
        item_id,
        {{ as_of_date if as_of else 'date' }} as date,
        {{ 'true' if as_of else 'is_query' }} as is_query,
        {{ over_frame('sum', 'imp', 'before_day', query_day) }} as imp_hist,
        {{ over_frame('sum', 'clk', 'before_day', query_day) }} as clk_hist,
        {{ over_frame('max', 'last_in', 'before_day', query_day) }} as last_hist_date
    from timeline
    {%- if as_of %}
    group by user_id, item_id
    {%- else %}
    window before_day as (
        partition by user_id, item_id order by day_number
        range between unbounded preceding and 1 preceding
    )
    {%- endif %}

),

final as (

    select
        user_id,
        item_id,
        coalesce(imp_hist, 0) as ui_imp_hist,
        coalesce(clk_hist, 0) as ui_clk_hist,
        case when last_hist_date is not null then 1 else 0 end as ui_has_history,
        last_hist_date as ui_last_hist_date,
        date
    from windowed
    where is_query

)

select * from final
{% endmacro %}


{#- The pair's impressions, clicks and last day with impressions before rebuild_from (see entity_state). -#}
{% macro pair_state(daily_model, snapshot_model) %}
{%- set carry = carried_snapshot(snapshot_model) -%}
with {{ daily_input(daily_model, carry.since, carry.until, below_end=true) }},

carried as (
    {%- if carry.snapshot %}

    select user_id, item_id, ui_imp_hist as imp, ui_clk_hist as clk, ui_last_hist_date as last_date
    from {{ carry.snapshot }}
    where user_id is not null and ui_has_history = 1

    union all
    {%- endif %}

    select user_id, item_id, imp, clk, date as last_date
    from daily

),

{{ state_totals(carry, ['user_id', 'item_id'], [('imp', 'sum'), ('clk', 'sum'), ('last_date', 'max')]) }}

select * from final
{% endmacro %}
