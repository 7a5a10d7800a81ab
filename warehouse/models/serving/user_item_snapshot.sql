{#-
  Grain: one row per (user_id, item_id) pair with history, and one row with both ids null (no
  history). The pair as of the start of `date`, the day after the last day with data, in exactly the
  ui_* columns of training_samples. The same timeline and column expressions as user_item_history,
  read on one day after all of them.
-#}
{%- set plan = build_plan() -%}

with daily as (

    select * from {{ ref('int_user_item_daily') }}
    where {{ date_range('date', plan.rebuild_from, plan.last_date) }}

),

state as (

    select * from {{ ref('int_user_item_state') }}

),

as_of as (

    select distinct date from {{ ref('scene_prior_snapshot') }}

),

timeline as (

    select user_id, item_id, imp, clk, last_date
    from state

    union all

    select user_id, item_id, imp, clk, date as last_date
    from daily

),

-- One query day after every row: the sums before it are plain aggregates per pair.
windowed as (

    select
        user_id,
        item_id,
        {{ date_literal(plan.as_of) }} as date,
        sum(imp) as imp_hist,
        sum(clk) as clk_hist,
        max(last_date) as last_hist_date
    from timeline
    group by user_id, item_id

),

features as (

    select
        user_id,
        item_id,
        {{ pair_features() }},
        date
    from windowed

),

-- A pair without history: every column takes its default, as in training_samples.
no_history as (

    select * from features
    where false

),

known as (

    select
        features.user_id,
        features.item_id,
        features.date,
        {{ history_defaults('ui', 'features') }}
    from features

),

unknown as (

    select
        cast(null as string) as user_id,
        cast(null as string) as item_id,
        as_of.date,
        {{ history_defaults('ui', 'no_history') }}
    from as_of
    left join no_history
        on true

),

final as (

    select
        user_id,
        item_id,
        {{ history_columns('ui', none) }},
        ui_last_hist_date,
        date
    from (select * from known union all select * from unknown)

)

select * from final
