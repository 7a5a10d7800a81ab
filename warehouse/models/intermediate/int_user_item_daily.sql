{#- One row per (user, item) pair and day with impressions of that item to that user. -#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'restaged'}) }}
{%- set plan = build_plan() -%}

with impressions as (

    select * from {{ ref('stg_impressions') }}
    where {{ in_list('date', plan.restaged, plan.full, dates=true) }}

),

final as (

    select
        user_id,
        item_id,
        date,
        unix_date(date) as day_number,
        {{ daily_counts(by_scene=false) }}
    from impressions
    group by user_id, item_id, date

)

select * from final
