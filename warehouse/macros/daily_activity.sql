{#-
  One row per entity (user or item) and day with impressions: that day's impressions and clicks,
  in total and per scene. The per-day input of history_features().
-#}
{% macro daily_activity(key) %}
with impressions as (

    select * from {{ ref('stg_impressions') }}

),

final as (

    select
        {{ key }},
        date,
        unix_date(date) as day_number,
        count(*) as imp,
        sum(label) as clk,
        {%- for s in scenes() %}
        count_if(scene = {{ s }}) as imp_s{{ s }},
        count_if(scene = {{ s }} and label = 1) as clk_s{{ s }}{{ ',' if not loop.last }}
        {%- endfor %}
    from impressions
    group by {{ key }}, date

)

select * from final
{% endmacro %}
