{#-
  Every (user, item) pair with impressions before this run's rebuild_from day: its impressions,
  clicks and last day with impressions, as of the start of that day. Carried forward from the
  previous user_item_snapshot when nothing before its day changed (macros/carried_state.sql).
-#}
{%- set carry = carried_snapshot('user_item_snapshot') -%}

with daily as (

    select * from {{ ref('int_user_item_daily') }}
    where {{ date_range('date', carry.since, carry.until, below_end=true) }}

),
{%- if carry.snapshot %}

previous_snapshot as (

    select * from {{ carry.snapshot }}
    where user_id is not null and ui_has_history = 1

),
{%- endif %}

carried as (
    {%- if carry.snapshot %}

    select
        user_id,
        item_id,
        ui_imp_hist as imp,
        ui_clk_hist as clk,
        ui_last_hist_date as last_date
    from previous_snapshot

    union all
    {%- endif %}

    select
        user_id,
        item_id,
        imp,
        clk,
        date as last_date
    from daily

),

final as (
    {%- if carry.alone %}

    -- Only the snapshot is carried: one row per pair already.
    select * from carried
    {%- else %}

    select
        user_id,
        item_id,
        sum(imp) as imp,
        sum(clk) as clk,
        max(last_date) as last_date
    from carried
    group by user_id, item_id
    {%- endif %}

)

select * from final
