{#-
  Grain: one row per (item_id, date) where the item has an impression on date: the item as of
  the start of date. 7d = the calendar days D - window_days .. D - 1, cum = every day before D;
  the day itself (the row's own label) is never inside.
  A run rewrites every day from the plan's rebuild_from on. The item's totals before that day come
  from int_item_state, so no window reaches further back than window_days before rebuild_from.
-#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'rebuilt'}) }}
{%- set plan = build_plan() -%}
{%- set rebuild_from = date_literal(plan.rebuild_from) -%}

with daily as (

    select * from {{ ref('int_item_daily') }}
    where {{ date_range('date', plan.window_from, plan.last_date) }}

),

state as (

    select * from {{ ref('int_item_state') }}

),

rebuilt_items as (

    select distinct item_id
    from daily
    where date >= {{ rebuild_from }}

),

-- The state as one row on the day before rebuild_from: it feeds the cumulative counts only. The
-- days of daily before rebuild_from feed the short window only (the state already counts them).
timeline as (

    select
        state.item_id,
        unix_date({{ rebuild_from }}) - 1 as day_number,
        cast(null as date) as date,
        false as in_window,
        true as in_cumulative,
        {{ column_list(entity_counts(), 'state') }},
        state.first_date,
        state.last_date
    from state
    left semi join rebuilt_items
        on state.item_id = rebuilt_items.item_id

    union all

    select
        item_id,
        day_number,
        date,
        true as in_window,
        date >= {{ rebuild_from }} as in_cumulative,
        {{ column_list(entity_counts()) }},
        date as first_date,
        date as last_date
    from daily

),

windowed as (

    select
        item_id,
        date,
        {{- windowed_counts(entity_counts()) }}
    from timeline
    {{ point_in_time_windows('item_id') }}

),

final as (

    select
        item_id,
        {{ entity_features('i') }},
        date
    from windowed
    where date >= {{ rebuild_from }}

)

select * from final
