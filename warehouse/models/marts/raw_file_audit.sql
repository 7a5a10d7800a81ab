{#-
  Grain: one row per raw file the warehouse holds (read now or by an earlier build and unchanged):
  its records (header lines aside), how many were staged and quarantined (records = staged +
  quarantined, file by file), the days of its clean records, and the size and modification time it
  was read with. Written last, after every other model and its tests passed: a build that stops
  early leaves the previous audit, so the next build parses the same files again. The next build
  compares files against it to find new, changed and removed ones.
-#}
-- depends_on: {{ ref('training_samples') }}
-- depends_on: {{ ref('user_features_snapshot') }}
-- depends_on: {{ ref('item_features_snapshot') }}
-- depends_on: {{ ref('user_item_snapshot') }}
{%- set plan = build_plan() %}

with files as (

    select * from {{ ref('stg_raw_files') }}
    where status in ('new', 'changed', 'unchanged')

),

parsed as (

    select source_file, count(*) as records
    from {{ ref('base_raw_impressions') }}
    where not is_header
    group by source_file

),

staged as (

    select source_file, count(*) as staged, array_sort(collect_set(date)) as dates
    from {{ ref('stg_impressions') }}
    where {{ in_list('date', plan.restaged, plan.full, dates=true) }}
        and {{ in_list('source_file', plan.batch_files, plan.full) }}
    group by source_file

),

quarantined as (

    select source_file, count(*) as quarantined
    from {{ ref('quarantine_impressions') }}
    where {{ in_list('source_file', plan.batch_files, plan.full) }}
    group by source_file

),

counted as (

    select
        files.source_file,
        files.status = 'unchanged' as kept,
        files.file_path,
        files.modification_time,
        files.size_bytes,
        coalesce(parsed.records, 0) as records,
        coalesce(staged.staged, 0) as staged,
        coalesce(quarantined.quarantined, 0) as quarantined,
        coalesce(staged.dates, cast(array() as array<date>)) as dates,
        files.previous_records,
        files.previous_staged,
        files.previous_quarantined,
        files.previous_dates,
        files.previous_loaded_at
    from files
    left join parsed
        on files.source_file = parsed.source_file
    left join staged
        on files.source_file = staged.source_file
    left join quarantined
        on files.source_file = quarantined.source_file

),

final as (

    select
        source_file,
        if(kept, previous_records, records) as records,
        if(kept, previous_staged, staged) as staged,
        if(kept, previous_quarantined, quarantined) as quarantined,
        array_min(if(kept, previous_dates, dates)) as first_date,
        array_max(if(kept, previous_dates, dates)) as last_date,
        if(kept, previous_dates, dates) as dates,
        size_bytes,
        modification_time,
        file_path,
        if(kept, previous_loaded_at, current_timestamp()) as loaded_at
    from counted

)

select * from final
