{#-
  One row per scene and day with impressions: the scene's click rate over all earlier days, the
  prior of the smoothed CTRs. The first day of a scene has no history and takes var ctr_prior_default.
  Ephemeral: training_samples reads it inline; int_scene_daily is a few rows per day, so the whole
  history is cheap to window on every run.
-#}
{{ config(materialized='ephemeral') }}

with daily as (

    select * from {{ ref('int_scene_daily') }}

),

history as (

    select
        scene,
        date,
        sum(imp) over before_day as imp_before,
        sum(clk) over before_day as clk_before
    from daily
    window before_day as (
        partition by scene order by day_number
        range between unbounded preceding and 1 preceding
    )

),

final as (

    select
        scene,
        date,
        coalesce(imp_before, 0) as scene_imp_before,
        {{ scene_prior('imp_before', 'clk_before') }} as scene_prior_ctr
    from history

)

select * from final
