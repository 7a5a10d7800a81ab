-- Leak test: on every day this run rebuilt, the user's 7d and cumulative counts of a row dated D
-- equal a direct recount of the staged impressions dated D - window_days .. D-1 and before D, so no same-day or
-- later event is inside. The cumulative recount starts from the users' state at the start of
-- rebuild_from (empty on a full build, which recounts all of history) and adds the staged days
-- from rebuild_from on, so a daily run does not rescan history.
{%- set plan = build_plan() %}

with samples as (

    select distinct user_id, date, u_imp_7d, u_clk_7d, u_imp_cum, u_clk_cum
    from {{ ref('training_samples') }}
    where {{ in_list('date', plan.rebuilt, plan.full, dates=true) }}

),

state as (

    select user_id, imp, clk from {{ ref('int_user_state') }}

),

-- Counted per user and day first, straight from stg_impressions, so the range join below pairs
-- days with days instead of every impression with every later date of its user.
impressions_daily as (

    select
        user_id,
        date,
        count(*) as imp,
        sum(label) as clk
    from {{ ref('stg_impressions') }}
    where {{ date_range('date', plan.window_from, plan.last_date) }}
    group by user_id, date

),

recount as (

    select
        samples.user_id,
        samples.date,
        coalesce(sum(case when impressions_daily.date >= date_sub(samples.date, {{ window_days() }}) then impressions_daily.imp end), 0) as imp_7d,
        coalesce(sum(case when impressions_daily.date >= date_sub(samples.date, {{ window_days() }}) then impressions_daily.clk end), 0) as clk_7d,
        coalesce(sum(case when impressions_daily.date >= {{ date_literal(plan.rebuild_from) }} then impressions_daily.imp end), 0) as imp_since_start,
        coalesce(sum(case when impressions_daily.date >= {{ date_literal(plan.rebuild_from) }} then impressions_daily.clk end), 0) as clk_since_start
    from samples
    left join impressions_daily
        on samples.user_id = impressions_daily.user_id
        and impressions_daily.date < samples.date
    group by samples.user_id, samples.date

)

select
    samples.*,
    recount.imp_7d,
    recount.clk_7d,
    coalesce(state.imp, 0) + recount.imp_since_start as imp_cum,
    coalesce(state.clk, 0) + recount.clk_since_start as clk_cum
from samples
join recount
    on samples.user_id = recount.user_id
    and samples.date = recount.date
left join state
    on samples.user_id = state.user_id
where samples.u_imp_7d != recount.imp_7d
    or samples.u_clk_7d != recount.clk_7d
    or samples.u_imp_cum != coalesce(state.imp, 0) + recount.imp_since_start
    or samples.u_clk_cum != coalesce(state.clk, 0) + recount.clk_since_start
