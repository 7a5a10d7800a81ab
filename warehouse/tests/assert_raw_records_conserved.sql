-- Every raw record (header lines aside) of every file parsed in this run lands in exactly one of
-- stg_impressions / quarantine_impressions, file by file. The records are counted in
-- base_raw_impressions, this run's CSV stored as is (one row per CSV record), so the CSV is not
-- parsed again; staged and quarantined rows are counted in the partitions this run wrote.
{%- set plan = build_plan() %}

with raw_records as (

    select source_file, count(*) as n
    from {{ ref('base_raw_impressions') }}
    where not is_header
    group by source_file

),

staged as (

    select source_file, count(*) as n
    from {{ ref('stg_impressions') }}
    where {{ in_list('date', plan.restaged, plan.full, dates=true) }}
        and {{ in_list('source_file', plan.batch_files, plan.full) }}
    group by source_file

),

quarantined as (

    select source_file, count(*) as n
    from {{ ref('quarantine_impressions') }}
    where {{ in_list('source_file', plan.batch_files, plan.full) }}
    group by source_file

)

select
    coalesce(raw_records.source_file, staged.source_file, quarantined.source_file) as source_file,
    raw_records.n as raw_records,
    staged.n as staged,
    quarantined.n as quarantined
from raw_records
full outer join staged
    on raw_records.source_file = staged.source_file
full outer join quarantined
    on coalesce(raw_records.source_file, staged.source_file) = quarantined.source_file
where coalesce(raw_records.n, 0) != coalesce(staged.n, 0) + coalesce(quarantined.n, 0)
