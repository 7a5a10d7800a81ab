{#- Grain: one row per (user_id, item_id, date) where the user saw the item on date; the pair's history before date. -#}
{{ config(partition_by=['date']) }}

with daily as (

    select * from {{ ref('int_user_item_daily') }}

),

windowed as (

    select
        user_id,
        item_id,
        date,
        sum(imp) over before_day as imp_hist,
        sum(clk) over before_day as clk_hist,
        max(date) over before_day as last_hist_date
    from daily
    window before_day as (
        partition by user_id, item_id order by day_number
        range between unbounded preceding and 1 preceding
    )

),

final as (

    select
        user_id,
        item_id,
        coalesce(imp_hist, 0) as ui_imp_hist,
        coalesce(clk_hist, 0) as ui_clk_hist,
        case when last_hist_date is not null then 1 else 0 end as ui_has_history,
        last_hist_date as ui_last_hist_date,
        date
    from windowed

)

select * from final
