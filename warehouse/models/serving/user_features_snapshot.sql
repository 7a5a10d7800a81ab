{#-
  Grain: one row per (user_id, scene): every user with history, and one row with user_id null (no
  history), for every scene of var scenes. The user as of the start of `date`, the day after the last
  day with data, in exactly the u_* columns of training_samples: a training_samples row for that
  user and scene on `date` has these values (the smoothed CTRs use that scene's prior). Same macros
  as the daily mart and training_samples.
-#}
{{ config(partition_by=['scene']) }}

-- Named apart from the CTEs of the macro inside `features` (Spark resolves nested CTEs by name).
with features as (

    {{ entity_history('int_user_daily', 'int_user_state', 'user_id', 'u', as_of=true) | indent(4) }}

),

priors as (

    select * from {{ ref('scene_prior_snapshot') }}

),

-- No feature row: every history column takes its default, as in training_samples.
no_history as (

    select * from features where false

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

snapshot_rows as (

    select
        user_id,
        {{ history_columns('u', 'scene_prior_ctr') }},
        u_last_hist_date,
        date,
        scene
    from (select * from known union all select * from unknown)

)

select * from snapshot_rows
