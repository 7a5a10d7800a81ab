-- Leak test: the user's 7d and cumulative counts of a row dated D equal a direct recount of the
-- staged impressions dated D-7..D-1 and before D, so no same-day or later event is inside.
with samples as (

    select distinct user_id, date, u_imp_7d, u_clk_7d, u_imp_cum, u_clk_cum
    from {{ ref('training_samples') }}

),

impressions as (

    select user_id, date, label from {{ ref('stg_impressions') }}

),

-- Counted per user and day first, straight from stg_impressions, so the range join below pairs
-- days with days instead of every impression with every later date of its user.
impressions_daily as (

    select
        user_id,
        date,
        count(*) as imp,
        sum(label) as clk
    from impressions
    group by user_id, date

),

recount as (

    select
        samples.user_id,
        samples.date,
        coalesce(sum(case when impressions_daily.date >= date_sub(samples.date, 7) then impressions_daily.imp end), 0) as imp_7d,
        coalesce(sum(case when impressions_daily.date >= date_sub(samples.date, 7) then impressions_daily.clk end), 0) as clk_7d,
        coalesce(sum(impressions_daily.imp), 0) as imp_cum,
        coalesce(sum(impressions_daily.clk), 0) as clk_cum
    from samples
    left join impressions_daily
        on samples.user_id = impressions_daily.user_id
        and impressions_daily.date < samples.date
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
