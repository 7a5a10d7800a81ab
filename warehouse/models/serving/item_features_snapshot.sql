{#-
  Grain: one row per (item_id, scene): every item with history, and one row with item_id null (no
  history), for every scene of var scenes. The item as of the start of `date`, the day after the last
  day with data, in exactly the i_* columns of training_samples: a training_samples row of that item
  and scene on `date` has these values (the smoothed CTRs use that scene's prior). The same
  timeline and column expressions as item_features_daily, read on one day after all of them.
-#}
{{ config(partition_by=['scene']) }}
{%- set plan = build_plan() -%}
{%- set rebuild_from = date_literal(plan.rebuild_from) -%}
{%- set as_of = date_literal(plan.as_of) -%}

with daily as (

    select * from {{ ref('int_item_daily') }}
    where {{ date_range('date', plan.window_from, plan.last_date) }}

),

state as (

    select * from {{ ref('int_item_state') }}

),

priors as (

    select * from {{ ref('scene_prior_snapshot') }}

),

timeline as (

    select
        item_id,
        unix_date({{ rebuild_from }}) - 1 as day_number,
        false as in_window,
        true as in_cumulative,
        {{ column_list(entity_counts()) }},
        first_date,
        last_date
    from state

    union all

    select
        item_id,
        day_number,
        true as in_window,
        date >= {{ rebuild_from }} as in_cumulative,
        {{ column_list(entity_counts()) }},
        date as first_date,
        date as last_date
    from daily

),

-- One query day after every row: the windows are plain aggregates per item.
windowed as (

    select
        item_id,
        {{ as_of }} as date,
        {{- windowed_counts(entity_counts(), as_of=as_of) }}
    from timeline
    group by item_id

),

features as (

    select
        item_id,
        {{ entity_features('i') }},
        date
    from windowed

),

-- A item without history: every column takes its default, as in training_samples.
no_history as (

    select * from features
    where false

),

known as (

    select
        features.item_id,
        priors.scene,
        priors.date,
        priors.scene_prior_ctr,
        {{ history_defaults('i', 'features') }}
    from features
    cross join priors

),

unknown as (

    select
        cast(null as string) as item_id,
        priors.scene,
        priors.date,
        priors.scene_prior_ctr,
        {{ history_defaults('i', 'no_history') }}
    from priors
    left join no_history
        on true

),

final as (

    select
        item_id,
        {{ history_columns('i', 'scene_prior_ctr') }},
        i_last_hist_date,
        date,
        scene
    from (select * from known union all select * from unknown)

)

select * from final
