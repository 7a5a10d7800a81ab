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

with files as (

    select * from {{ ref('stg_raw_files') }}
    where status in ('new', 'changed', 'unchanged')

),

-- The counts assert_raw_records_conserved checks, from the same macro.
counts as (

    {{ file_record_counts() | indent(4) }}

),

counted as (

    select
        files.source_file,
        files.status = 'unchanged' as kept,
        files.file_path,
        files.modification_time,
        files.size_bytes,
        coalesce(counts.records, 0) as records,
        coalesce(counts.staged, 0) as staged,
        coalesce(counts.quarantined, 0) as quarantined,
        coalesce(counts.dates, cast(array() as array<date>)) as dates,
        files.previous_records,
        files.previous_staged,
        files.previous_quarantined,
        files.previous_dates,
        files.previous_loaded_at
    from files
    left join counts
        on files.source_file = counts.source_file

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
