{#- Grain: one row per scene (var scenes): its smoothing prior as of the start of `date`, the day after the last day with data. -#}
{%- set plan = build_plan() -%}

with daily as (

    select * from {{ ref('int_scene_daily') }}

),

scenes as (

    select explode(array({{ scenes() | join(', ') }})) as scene

),

totals as (

    select
        scene,
        sum(imp) as imp_before,
        sum(clk) as clk_before
    from daily
    group by scene

),

final as (

    select
        scenes.scene,
        {{ date_literal(plan.as_of) }} as date,
        coalesce(totals.imp_before, 0) as scene_imp_before,
        {{ scene_prior('totals.imp_before', 'totals.clk_before') }} as scene_prior_ctr
    from scenes
    left join totals
        on scenes.scene = totals.scene
    -- No row before the first day with data.
    where {{ 'true' if plan.as_of else 'false' }}

)

select * from final
