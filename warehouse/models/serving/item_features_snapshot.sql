{#-
  Grain: one row per (item_id, scene): every item with history, and one row with item_id null (no
  history), for every scene of var scenes. The item as of the start of `date`, the day after the last
  day with data, in exactly the i_* columns of training_samples: a training_samples row for that
  item and scene on `date` has these values (the smoothed CTRs use that scene's prior). Same macros
  as the daily mart and training_samples.
-#}
{{ config(partition_by=['scene']) }}

-- Named apart from the CTEs of the macro inside `features` (Spark resolves nested CTEs by name).
with features as (

    {{ entity_history('int_item_daily', 'int_item_state', 'item_id', 'i', as_of=true) | indent(4) }}

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

snapshot_rows as (

    select
        item_id,
        {{ history_columns('i', 'scene_prior_ctr') }},
        i_last_hist_date,
        date,
        scene
    from (select * from known union all select * from unknown)

)

select * from snapshot_rows
