{#- One row per scene and day with impressions: that day's impressions and clicks. -#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'restaged'}) }}
{%- set plan = build_plan() -%}

with impressions as (

    select * from {{ ref('stg_impressions') }}
    where {{ in_list('date', plan.restaged, plan.full, dates=true) }}

),

final as (

    select
        scene,
        date,
        unix_date(date) as day_number,
        {{ daily_counts(by_scene=false) }}
    from impressions
    group by scene, date

)

select * from final
