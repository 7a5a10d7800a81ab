{#-
  Every user with impressions before this run's rebuild_from day: its impressions and clicks (in total
  and per scene) and its first and last day with impressions, as of the start of that day.
  Carried forward from the previous user_features_snapshot when nothing before its day changed
  (macros/carried_state.sql), so a daily run does not read all of int_user_daily.
-#}
{%- set carry = carried_snapshot('user_features_snapshot', 'scene = ' ~ scenes()[0]) -%}

with daily as (

    select * from {{ ref('int_user_daily') }}
    where {{ date_range('date', carry.since, carry.until, below_end=true) }}

),
{%- if carry.snapshot %}

previous_snapshot as (

    select * from {{ carry.snapshot }}
    where scene = {{ scenes()[0] }} and user_id is not null and u_has_history = 1

),
{%- endif %}

carried as (
    {%- if carry.snapshot %}

    select
        user_id,
        {{ state_from_features('u') }}
    from previous_snapshot

    union all
    {%- endif %}

    select
        user_id,
        {{ column_list(entity_counts()) }},
        date as first_date,
        date as last_date
    from daily

),

final as (
    {%- if carry.alone %}

    -- Only the snapshot is carried: one row per user already.
    select * from carried
    {%- else %}

    select
        user_id,
        {{- state_totals(entity_counts()) }}
    from carried
    group by user_id
    {%- endif %}

)

select * from final
