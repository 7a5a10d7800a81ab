{#-
  One row per scene and day with impressions: the scene's click rate over all earlier days, the
  prior of the smoothed CTRs. The first day of a scene has no history and takes var ctr_prior_default.
-#}
with impressions as (

    select * from {{ ref('stg_impressions') }}

),

scene_daily as (

    select
        scene,
        date,
        unix_date(date) as day_number,
        count(*) as imp,
        sum(label) as clk
    from impressions
    group by scene, date

),

history as (

    select
        scene,
        date,
        sum(imp) over before_day as imp_before,
        sum(clk) over before_day as clk_before
    from scene_daily
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

)

select * from final
