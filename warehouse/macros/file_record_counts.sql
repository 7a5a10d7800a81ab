{#-
  One row per file parsed in this run (every file on a full build): its raw records (header lines
  aside, counted in the partitions of stg_raw_records this run wrote, so the CSV is not parsed
  again), how many of them are in stg_impressions and in quarantine_impressions (in the partitions
  this run wrote), and the days of its clean records. A file missing from a side counts 0 there.
  raw_file_audit records these counts; assert_raw_records_conserved fails on any file where
  records != staged + quarantined. The audit is written after that test passes, so the test counts
  the tables themselves rather than reading the audit.
-#}
{% macro file_record_counts() %}
{%- set plan = build_plan() -%}
with parsed_records as (

    select source_file, count(*) as records
    from {{ ref('stg_raw_records') }}
    where {{ in_list('source_file', plan.batch_files, plan.full) }}
    group by source_file

),

staged_records as (

    select source_file, count(*) as staged, array_sort(collect_set(date)) as dates
    from {{ ref('stg_impressions') }}
    where {{ in_list('date', plan.restaged, plan.full, dates=true) }}
        and {{ in_list('source_file', plan.batch_files, plan.full) }}
    group by source_file

),

quarantined_records as (

    select source_file, count(*) as quarantined
    from {{ ref('quarantine_impressions') }}
    where {{ in_list('source_file', plan.batch_files, plan.full) }}
    group by source_file

),

per_file as (

    select
        coalesce(parsed_records.source_file, staged_records.source_file, quarantined_records.source_file) as source_file,
        coalesce(parsed_records.records, 0) as records,
        coalesce(staged_records.staged, 0) as staged,
        coalesce(quarantined_records.quarantined, 0) as quarantined,
        coalesce(staged_records.dates, cast(array() as array<date>)) as dates
    from parsed_records
    full outer join staged_records
        on parsed_records.source_file = staged_records.source_file
    full outer join quarantined_records
        on coalesce(parsed_records.source_file, staged_records.source_file) = quarantined_records.source_file

)

select * from per_file
{% endmacro %}
