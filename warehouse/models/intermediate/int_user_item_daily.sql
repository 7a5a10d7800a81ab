{#- One row per (user, item) pair and day with impressions of that item to that user. -#}
with impressions as (

    select * from {{ ref('stg_impressions') }}

),

final as (

    select
        user_id,
        item_id,
        date,
        unix_date(date) as day_number,
        count(*) as imp,
        sum(label) as clk
    from impressions
    group by user_id, item_id, date

)

select * from final
