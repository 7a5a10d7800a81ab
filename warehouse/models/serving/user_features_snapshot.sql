{#-
  Grain: one row per (user_id, scene): every user with history, and one row with user_id null (no
  history), for every scene of var scenes. The user as of the start of `date`, the day after the last
  day with data, in exactly the u_* columns of training_samples: a training_samples row of that user
  and scene on `date` has these values (the smoothed CTRs use that scene's prior). The same
  timeline and column expressions as user_features_daily, read on one day after all of them.
-#}
{{ config(partition_by=['scene']) }}
{%- set plan = build_plan() -%}
{%- set rebuild_from = date_literal(plan.rebuild_from) -%}
{%- set as_of = date_literal(plan.as_of) -%}

with daily as (

    select * from {{ ref('int_user_daily') }}
    where {{ date_range('date', plan.window_from, plan.last_date) }}

),

state as (

    select * from {{ ref('int_user_state') }}

),

priors as (

    select * from {{ ref('scene_prior_snapshot') }}

),

timeline as (

    select
        user_id,
        unix_date({{ rebuild_from }}) - 1 as day_number,
        false as in_window,
        true as in_cumulative,
        {{ column_list(entity_counts()) }},
        first_date,
        last_date
    from state

    union all

    select
        user_id,
        day_number,
        true as in_window,
        date >= {{ rebuild_from }} as in_cumulative,
        {{ column_list(entity_counts()) }},
        date as first_date,
        date as last_date
    from daily

),

-- One query day after every row: the windows are plain aggregates per user.
windowed as (

    select
        user_id,
        {{ as_of }} as date,
        {{- windowed_counts(entity_counts(), as_of=as_of) }}
    from timeline
    group by user_id

),

features as (

    select
        user_id,
        {{ entity_features('u') }},
        date
    from windowed

),

-- A user without history: every column takes its default, as in training_samples.
no_history as (

    select * from features
    where false

),

known as (

    select
        features.user_id,
        priors.scene,
        priors.date,
        priors.scene_prior_ctr,
        {{ history_defaults('u', 'features') }}
    from features
    cross join priors

),

unknown as (

    select
        cast(null as string) as user_id,
        priors.scene,
        priors.date,
        priors.scene_prior_ctr,
        {{ history_defaults('u', 'no_history') }}
    from priors
    left join no_history
        on true

),

final as (

    select
        user_id,
        {{ history_columns('u', 'scene_prior_ctr') }},
        u_last_hist_date,
        date,
        scene
    from (select * from known union all select * from unknown)

)

select * from final
