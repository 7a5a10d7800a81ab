{#- One row per user and day with impressions: that day's impressions and clicks, in total and per scene. -#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'restaged'}) }}
{%- set plan = build_plan() -%}

with impressions as (

    select * from {{ ref('stg_impressions') }}
    where {{ in_list('date', plan.restaged, plan.full, dates=true) }}

),

final as (

    select
        user_id,
        date,
        unix_date(date) as day_number,
        {{ daily_counts(by_scene=true) }}
    from impressions
    group by user_id, date

)

select * from final
