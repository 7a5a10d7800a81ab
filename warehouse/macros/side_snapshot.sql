{#-
  The serving snapshot of one side, side 'u' (users) or 'i' (items). Grain: one row per (id, scene):
  every id with history, and one row with the id null (no history), for every scene of var scenes.
  The entity as of the start of `date`, the day after the last day with data, in exactly the side's
  columns of training_samples: a training_samples row for that id and scene on `date` has these
  values (the smoothed CTRs use that scene's prior). Same macros as the daily mart and
  training_samples.
-#}
{% macro side_snapshot(side) %}
{%- set entity = {'u': 'user', 'i': 'item'}[side] -%}
{%- set key = entity ~ '_id' -%}
-- Named apart from the CTEs of the macro inside `features` (Spark resolves nested CTEs by name).
with features as (

    {{ entity_history('int_' ~ entity ~ '_daily', 'int_' ~ entity ~ '_state', key, side, as_of=true) | indent(4) }}

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
        features.{{ key }},
        priors.scene,
        priors.date,
        priors.scene_prior_ctr,
        {{ history_defaults(side, 'features') }}
    from features
    cross join priors

),

unknown as (

    select
        cast(null as string) as {{ key }},
        priors.scene,
        priors.date,
        priors.scene_prior_ctr,
        {{ history_defaults(side, 'no_history') }}
    from priors
    left join no_history
        on true

),

snapshot_rows as (

    select
        {{ key }},
        {{ history_columns(side, 'scene_prior_ctr') }},
        {{ side }}_last_hist_date,
        date,
        scene
    from (select * from known union all select * from unknown)

)

select * from snapshot_rows
{% endmacro %}
