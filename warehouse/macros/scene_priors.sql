{#-
  The smoothing prior of each scene: its click rate over all days before the row's day, or var
  ctr_prior_default when the scene has no earlier day. as_of=false: per scene and day with
  impressions (training_samples); as_of=true: per scene in var scenes on the day after the last day
  with data (the serving snapshot). Reads int_scene_daily, a row per scene and day, so the whole
  history is a few rows per day.
-#}
{% macro scene_priors(as_of=false) %}
{%- set plan = build_plan() if as_of else none -%}
with daily as (

    select * from {{ ref('int_scene_daily') }}

),

timeline as (

    select scene, date, day_number, {{ 'false' if as_of else 'true' }} as is_query, imp, clk
    from daily
    {%- if as_of and plan.as_of %}
    {%- for s in scenes() %}

    union all

    select {{ s }}, date'{{ plan.as_of }}', unix_date(date'{{ plan.as_of }}'), true, 0, 0
    {%- endfor %}
    {%- endif %}

),

history as (

    select
        scene,
        date,
        is_query,
        sum(imp) over before_day as imp_before,
        sum(clk) over before_day as clk_before
    from timeline
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
        case
            when imp_before > 0 then clk_before / imp_before
            else cast({{ var("ctr_prior_default") }} as double)
        end as scene_prior_ctr
    from history
    where is_query

)

select * from final
{% endmacro %}


{#- Smoothed CTR, pulled toward the scene prior: (clicks + m * prior) / (impressions + m). -#}
{% macro smoothed_ctr(clk, imp, prior) -%}
  ({{ clk }} + {{ var('ctr_smoothing_weight') }} * {{ prior }}) / ({{ imp }} + {{ var('ctr_smoothing_weight') }})
{%- endmacro %}
