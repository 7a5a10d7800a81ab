{#-
  Point-in-time features of one entity (user or item) from its per-day aggregates: a row for every
  day the entity has impressions, describing it as of the start of that day. The windows range over
  day numbers, so 7d is calendar days D-7..D-1 whatever days are missing, and the current day
  (including the row's own label) is never inside a window.
-#}
{% macro history_features(daily_model, key, prefix) %}
with daily as (

    select * from {{ ref(daily_model) }}

),

windowed as (

    select
        {{ key }},
        date,
        sum(imp) over last_7_days as imp_7d,
        sum(clk) over last_7_days as clk_7d,
        sum(imp) over before_day as imp_cum,
        sum(clk) over before_day as clk_cum,
        {%- for s in scenes() %}
        sum(imp_s{{ s }}) over before_day as imp_cum_s{{ s }},
        sum(clk_s{{ s }}) over before_day as clk_cum_s{{ s }},
        {%- endfor %}
        min(date) over before_day as first_hist_date,
        max(date) over before_day as last_hist_date
    from daily
    window
        last_7_days as (
            partition by {{ key }} order by day_number
            range between 7 preceding and 1 preceding
        ),
        before_day as (
            partition by {{ key }} order by day_number
            range between unbounded preceding and 1 preceding
        )

),

final as (

    select
        {{ key }},
        coalesce(imp_7d, 0) as {{ prefix }}_imp_7d,
        coalesce(clk_7d, 0) as {{ prefix }}_clk_7d,
        case when imp_7d > 0 then clk_7d / imp_7d else 0.0 end as {{ prefix }}_ctr_7d,
        coalesce(imp_cum, 0) as {{ prefix }}_imp_cum,
        coalesce(clk_cum, 0) as {{ prefix }}_clk_cum,
        case when imp_cum > 0 then clk_cum / imp_cum else 0.0 end as {{ prefix }}_ctr_cum,
        {%- for s in scenes() %}
        coalesce(imp_cum_s{{ s }}, 0) as {{ prefix }}_imp_cum_s{{ s }},
        coalesce(clk_cum_s{{ s }}, 0) as {{ prefix }}_clk_cum_s{{ s }},
        {%- endfor %}
        coalesce(datediff(date, first_hist_date), 0) as {{ prefix }}_days_since_first,
        case when last_hist_date is not null then 1 else 0 end as {{ prefix }}_has_history,
        last_hist_date as {{ prefix }}_last_hist_date,
        date
    from windowed

)

select * from final
{% endmacro %}
