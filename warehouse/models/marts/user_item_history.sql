{#-
  Grain: one row per (user_id, item_id, date) where the user saw the item on date: the pair's
  impressions and clicks on every day before date. A run rewrites every day from the plan's
  rebuild_from on; the pair's totals before that day come from int_user_item_state.
-#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'rebuilt'}) }}
{%- set plan = build_plan() -%}
{%- set rebuild_from = date_literal(plan.rebuild_from) -%}

with daily as (

    select * from {{ ref('int_user_item_daily') }}
    where {{ date_range('date', plan.rebuild_from, plan.last_date) }}

),

state as (

    select * from {{ ref('int_user_item_state') }}

),

-- The state as one row on the day before rebuild_from, for the pairs seen again since.
timeline as (

    select
        state.user_id,
        state.item_id,
        unix_date({{ rebuild_from }}) - 1 as day_number,
        cast(null as date) as date,
        state.imp,
        state.clk,
        state.last_date
    from state
    left semi join daily
        on state.user_id = daily.user_id
        and state.item_id = daily.item_id

    union all

    select
        user_id,
        item_id,
        day_number,
        date,
        imp,
        clk,
        date as last_date
    from daily

),

windowed as (

    select
        user_id,
        item_id,
        date,
        sum(imp) over before_day as imp_hist,
        sum(clk) over before_day as clk_hist,
        max(last_date) over before_day as last_hist_date
    from timeline
    window before_day as (
        partition by user_id, item_id order by day_number
        range between unbounded preceding and 1 preceding
    )

),

final as (

    select
        user_id,
        item_id,
        {{ pair_features() }},
        date
    from windowed
    where date is not null

)

select * from final
