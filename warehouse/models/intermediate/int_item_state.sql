{#-
  Every item with impressions before this run's rebuild_from day: its impressions and clicks (in total
  and per scene) and its first and last day with impressions, as of the start of that day.
  Carried forward from the previous item_features_snapshot when nothing before its day changed
  (macros/carried_state.sql), so a daily run does not read all of int_item_daily.
-#}
{%- set carry = carried_snapshot('item_features_snapshot', 'scene = ' ~ scenes()[0]) -%}

with daily as (

    select * from {{ ref('int_item_daily') }}
    where {{ date_range('date', carry.since, carry.until, below_end=true) }}

),
{%- if carry.snapshot %}

previous_snapshot as (

    select * from {{ carry.snapshot }}
    where scene = {{ scenes()[0] }} and item_id is not null and i_has_history = 1

),
{%- endif %}

carried as (
    {%- if carry.snapshot %}

    select
        item_id,
        {{ state_from_features('i') }}
    from previous_snapshot

    union all
    {%- endif %}

    select
        item_id,
        {{ column_list(entity_counts()) }},
        date as first_date,
        date as last_date
    from daily

),

final as (
    {%- if carry.alone %}

    -- Only the snapshot is carried: one row per item already.
    select * from carried
    {%- else %}

    select
        item_id,
        {{- state_totals(entity_counts()) }}
    from carried
    group by item_id
    {%- endif %}

)

select * from final
