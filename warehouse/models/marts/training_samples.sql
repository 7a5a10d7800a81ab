{#-
  Grain: one row per stg_impressions row. Every feature describes the user, the item and the pair as
  of the start of the row's date (0 and *_has_history = 0 where there is no history). All joins are
  left joins on the unique keys of the feature tables, so no row is lost or repeated.
  Smoothed CTRs pull toward the prior of the row's scene: (clicks + m * prior) / (impressions + m).
  A run rewrites every day from rebuild_from on.
-#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'rebuilt'}) }}
{%- set plan = build_plan() -%}
{%- set rebuilt = in_list('date', plan.rebuilt, plan.full, dates=true) -%}

with impressions as (

    select * from {{ ref('stg_impressions') }}
    where {{ rebuilt }}

),

user_features as (

    select * from {{ ref('user_features_daily') }}
    where {{ rebuilt }}

),

item_features as (

    select * from {{ ref('item_features_daily') }}
    where {{ rebuilt }}

),

pair_history as (

    select * from {{ ref('user_item_history') }}
    where {{ rebuilt }}

),

scene_priors as (

    select * from {{ ref('int_scene_prior_daily') }}
    where {{ rebuilt }}

),

joined as (

    -- The pair history has about a row per impression, small on disk but gigabytes as a broadcast
    -- hash table (10M rows: 8.8M pairs), which Spark picks from the file size and every task then
    -- reads back from disk: hash it per shuffle partition instead. The scene priors, a few rows per
    -- day, are broadcast, so the impressions are shuffled once, for the pair history only.
    select /*+ shuffle_hash(pair_history), broadcast(scene_priors) */
        impressions.*,
        {{ history_defaults('u', 'user_features') }},
        {{ history_defaults('i', 'item_features') }},
        {{ history_defaults('ui', 'pair_history') }},
        scene_priors.scene_prior_ctr
    from impressions
    left join user_features
        on impressions.user_id = user_features.user_id
        and impressions.date = user_features.date
    left join item_features
        on impressions.item_id = item_features.item_id
        and impressions.date = item_features.date
    left join pair_history
        on impressions.user_id = pair_history.user_id
        and impressions.item_id = pair_history.item_id
        and impressions.date = pair_history.date
    left join scene_priors
        on impressions.scene = scene_priors.scene
        and impressions.date = scene_priors.date

),

final as (

    select
        impression_id,
        user_id,
        item_id,
        scene,
        label,
        log_ts,
        {{ history_columns('u', 'scene_prior_ctr') }},
        {{ history_columns('i', 'scene_prior_ctr') }},
        {{ history_columns('ui', 'scene_prior_ctr') }},
        u_last_hist_date,
        i_last_hist_date,
        ui_last_hist_date,
        {{ payload_columns() }},
        date
    from joined

)

select * from final
