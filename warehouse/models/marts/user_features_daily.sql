{#-
  Grain: one row per (user_id, date) where the user has an impression on date: the user as of
  the start of date. 7d = the calendar days D - window_days .. D - 1, cum = every day before D;
  the day itself (the row's own label) is never inside.
  A run rewrites every day from the plan's rebuild_from on. The user's totals before that day come
  from int_user_state, so no window reaches further back than window_days before rebuild_from.
-#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'rebuilt'}) }}
{%- set plan = build_plan() -%}
{%- set rebuild_from = date_literal(plan.rebuild_from) -%}

with daily as (

    select * from {{ ref('int_user_daily') }}
    where {{ date_range('date', plan.window_from, plan.last_date) }}

),

state as (

    select * from {{ ref('int_user_state') }}

),

rebuilt_users as (

    select distinct user_id
    from daily
    where date >= {{ rebuild_from }}

),

-- The state as one row on the day before rebuild_from: it feeds the cumulative counts only. The
-- days of daily before rebuild_from feed the short window only (the state already counts them).
timeline as (

    select
        state.user_id,
        unix_date({{ rebuild_from }}) - 1 as day_number,
        cast(null as date) as date,
        false as in_window,
        true as in_cumulative,
        {{ column_list(entity_counts(), 'state') }},
        state.first_date,
        state.last_date
    from state
    left semi join rebuilt_users
        on state.user_id = rebuilt_users.user_id

    union all

    select
        user_id,
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
        user_id,
        date,
        {{- windowed_counts(entity_counts()) }}
    from timeline
    {{ point_in_time_windows('user_id') }}

),

final as (

    select
        user_id,
        {{ entity_features('u') }},
        date
    from windowed
    where date >= {{ rebuild_from }}

)

select * from final
