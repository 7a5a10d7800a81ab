{#-
  One row per key (user, item or scene) and restaged day: that day's impressions and clicks, in
  total and (by_scene) per scene. The per-day input of the history macros.
-#}
{% macro daily_activity(key, by_scene=true) %}
{%- set plan = build_plan() -%}
with impressions as (

    select * from {{ ref('stg_impressions') }}
    where {{ in_list('date', plan.restaged, plan.full, dates=true) }}

),

final as (

    select
        {{ key }},
        date,
        unix_date(date) as day_number,
        count(*) as imp,
        sum(label) as clk{{ ',' if by_scene }}
        {%- if by_scene %}
        {%- for s in scenes() %}
        count_if(scene = {{ s }}) as imp_s{{ s }},
        count_if(scene = {{ s }} and label = 1) as clk_s{{ s }}{{ ',' if not loop.last }}
        {%- endfor %}
        {%- endif %}
    from impressions
    group by {{ key }}, date

)

select * from final
{% endmacro %}
