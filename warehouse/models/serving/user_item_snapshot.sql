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

-- The pairs seen on the rebuilt days. A daily run's are few beside the state's, so Spark broadcasts
-- them, and the state's other pairs pass through as they are instead of being shuffled and summed
-- again (at 10M rows a new day has 767k pairs, 76k of them among the state's 7.4M).
seen_again as (

    select distinct user_id, item_id
    from daily
    {%- if plan.full %}
    where false  -- a full build carries no state: nothing to pass through, every pair is summed
    {%- endif %}

),

untouched as (

    select user_id, item_id, imp, clk, last_date
    from state
    left anti join seen_again
        using (user_id, item_id)

),

timeline as (

    select user_id, item_id, imp, clk, last_date
    from state
    left semi join seen_again
        using (user_id, item_id)

    union all

    select user_id, item_id, imp, clk, date as last_date
    from daily

),

-- One query day after every row: the sums before it are plain aggregates per pair.
totals as (

    select
        user_id,
        item_id,
        sum(imp) as imp_hist,
        sum(clk) as clk_hist,
        max(last_date) as last_hist_date
    from timeline
    group by user_id, item_id

    union all

    select user_id, item_id, imp, clk, last_date
    from untouched

),

windowed as (

    select *, {{ date_literal(plan.as_of) }} as date
    from totals

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
