{#-
  Grain: one row per stg_impressions row. Every feature describes the user, the item and the pair as
  of the start of the row's date (0 and *_has_history = 0 where there is no history). All joins are
  left joins on the unique keys of the feature tables, so no row is lost or repeated.
  Smoothed CTRs pull toward the prior of the row's scene: (clicks + m * prior) / (impressions + m).
-#}
{{ config(partition_by=['date']) }}

{%- set m = var('ctr_smoothing_weight') -%}
{%- set history_counts = ['imp_7d', 'clk_7d', 'imp_cum', 'clk_cum'] -%}

with impressions as (

    select * from {{ ref('stg_impressions') }}

),

user_features as (

    select * from {{ ref('user_features_daily') }}

),

item_features as (

    select * from {{ ref('item_features_daily') }}

),

pair_history as (

    select * from {{ ref('user_item_history') }}

),

scene_priors as (

    select * from {{ ref('int_scene_prior_daily') }}

),

joined as (

    select
        impressions.*,
        {%- for p in ['u', 'i'] %}
        {%- set f = 'user_features' if p == 'u' else 'item_features' %}
        {%- for c in history_counts %}
        coalesce({{ f }}.{{ p }}_{{ c }}, 0) as {{ p }}_{{ c }},
        {%- endfor %}
        coalesce({{ f }}.{{ p }}_ctr_7d, 0.0) as {{ p }}_ctr_7d,
        coalesce({{ f }}.{{ p }}_ctr_cum, 0.0) as {{ p }}_ctr_cum,
        {%- for s in scenes() %}
        coalesce({{ f }}.{{ p }}_imp_cum_s{{ s }}, 0) as {{ p }}_imp_cum_s{{ s }},
        coalesce({{ f }}.{{ p }}_clk_cum_s{{ s }}, 0) as {{ p }}_clk_cum_s{{ s }},
        {%- endfor %}
        coalesce({{ f }}.{{ p }}_days_since_first, 0) as {{ p }}_days_since_first,
        coalesce({{ f }}.{{ p }}_has_history, 0) as {{ p }}_has_history,
        {{ f }}.{{ p }}_last_hist_date,
        {%- endfor %}
        coalesce(pair_history.ui_imp_hist, 0) as ui_imp_hist,
        coalesce(pair_history.ui_clk_hist, 0) as ui_clk_hist,
        coalesce(pair_history.ui_has_history, 0) as ui_has_history,
        pair_history.ui_last_hist_date,
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
        {%- for p in ['u', 'i'] %}
        {{ p }}_imp_7d,
        {{ p }}_clk_7d,
        cast({{ p }}_ctr_7d as double) as {{ p }}_ctr_7d,
        ({{ p }}_clk_7d + {{ m }} * scene_prior_ctr) / ({{ p }}_imp_7d + {{ m }}) as {{ p }}_ctr_7d_smooth,
        {{ p }}_imp_cum,
        {{ p }}_clk_cum,
        cast({{ p }}_ctr_cum as double) as {{ p }}_ctr_cum,
        ({{ p }}_clk_cum + {{ m }} * scene_prior_ctr) / ({{ p }}_imp_cum + {{ m }}) as {{ p }}_ctr_cum_smooth,
        {%- for s in scenes() %}
        {{ p }}_imp_cum_s{{ s }},
        {%- endfor %}
        {%- for s in scenes() %}
        {{ p }}_clk_cum_s{{ s }},
        {%- endfor %}
        {{ p }}_days_since_first,
        {{ p }}_has_history,
        {%- endfor %}
        ui_imp_hist,
        ui_clk_hist,
        ui_has_history,
        u_last_hist_date,
        i_last_hist_date,
        ui_last_hist_date,
        {%- for c in text_columns() %}
        {{ c }},
        {%- endfor %}
        {%- for c in deep_feature_columns() %}
        {{ c }},
        {%- endfor %}
        date
    from joined

)

select * from final
