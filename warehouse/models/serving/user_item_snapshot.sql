{#-
  Grain: one row per (user_id, item_id) pair with history, and one row with both ids null (no
  history). The pair as of the start of `date`, the day after the last day with data, in exactly the
  ui_* columns of training_samples. Same macros as user_item_history and training_samples.
-#}
-- Named apart from the CTEs of the macro inside `features` (Spark resolves nested CTEs by name).
with features as (

    {{ pair_history('int_user_item_daily', 'int_user_item_state', as_of=true) | indent(4) }}

),

as_of as (

    select distinct date from {{ ref('scene_prior_snapshot') }}

),

no_history as (

    select * from features where false

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

snapshot_rows as (

    select
        user_id,
        item_id,
        {{ history_columns('ui', none) }},
        ui_last_hist_date,
        date
    from (select * from known union all select * from unknown)

)

select * from snapshot_rows
