-- Leak test: the user's 7d and cumulative counts of a row dated D equal a direct recount of the
-- staged impressions dated D-7..D-1 and before D, so no same-day or later event is inside.
with samples as (

    select distinct user_id, date, u_imp_7d, u_clk_7d, u_imp_cum, u_clk_cum
    from {{ ref('training_samples') }}

),

impressions as (

    select user_id, date, label from {{ ref('stg_impressions') }}

),

recount as (

    select
        samples.user_id,
        samples.date,
        count_if(impressions.date >= date_sub(samples.date, 7)) as imp_7d,
        coalesce(sum(case when impressions.date >= date_sub(samples.date, 7) then impressions.label end), 0) as clk_7d,
        count(impressions.date) as imp_cum,
        coalesce(sum(impressions.label), 0) as clk_cum
    from samples
    left join impressions
        on samples.user_id = impressions.user_id
        and impressions.date < samples.date
    group by samples.user_id, samples.date

)

select samples.*, recount.imp_7d, recount.clk_7d, recount.imp_cum, recount.clk_cum
from samples
join recount
    on samples.user_id = recount.user_id
    and samples.date = recount.date
where samples.u_imp_7d != recount.imp_7d
    or samples.u_clk_7d != recount.clk_7d
    or samples.u_imp_cum != recount.imp_cum
    or samples.u_clk_cum != recount.clk_cum
