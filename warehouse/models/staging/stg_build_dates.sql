{#-
  One row per day this build touches or keeps (see macros/build_plan.sql):
    restaged  records of this day are parsed now or were in a changed / removed file: its staging
              partitions and daily aggregates are rewritten;
    live      the day has clean records after this build;
    was_live  the day had clean records before this build.
  rebuild_from (the first restaged day) and the rest of the plan are derived from these flags.
-#}
{%- set plan = file_plan() -%}

with files as (

    select * from {{ ref('stg_raw_files') }}

),

parsed_dates as (

    select distinct date
    from {{ ref('stg_raw_records') }}
    where {{ in_list('source_file', plan.batch_files, plan.full) }}
        and reject_reason is null

),

previous_dates as (

    select explode(previous_dates) as date, status
    from files
    where previous_dates is not null

),

flagged as (

    select date, true as parsed, false as stale, false as kept, false as previous
    from parsed_dates

    union all

    select date, false, status in ('changed', 'removed'), status = 'unchanged', true
    from previous_dates

),

final as (

    select
        date,
        bool_or(parsed or stale) as restaged,
        bool_or(parsed or kept) as live,
        bool_or(previous) as was_live
    from flagged
    group by date

)

select * from final
