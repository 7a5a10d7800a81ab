{#-
  One row per file under CTR_RAW_PATH or read by an earlier build, and what this run does with it
  (status):
    new        read now, never read before: parsed;
    changed    read before, but its size or modification time differs (or var rebuild_from /
               rebuild_to covers one of its days): parsed again, its earlier records replaced;
    unchanged  read before as it is now: kept;
    removed    read before, gone now (or no longer matching the glob): its records are dropped;
    ignored    under CTR_RAW_PATH but not read (its name does not match the glob; warned on run start).
  The earlier state is raw_file_audit, written last by every build that finished. Files found in
  stg_raw_records but not in the audit were staged by a build that did not finish: they count as
  read before with unknown size and time, so they are parsed again (or dropped when gone).
-#}
{%- set audit = previous_relation('raw_file_audit') -%}
{%- set records = previous_relation('stg_raw_records') -%}
{%- set unfinished = unfinished_files(records, audit) -%}
{%- set root = raw_root_uri() -%}
{%- set rebuild_from = var('rebuild_from', none) -%}
{%- set rebuild_to = var('rebuild_to', none) -%}

with listed as (

    select path as file_path, modificationTime as modification_time, length as size_bytes
    from {{ source('raw', 'files') }}

),

readable as (

    select path as file_path from {{ source('raw', 'csv_files') }}

),

current_files as (

    select
        -- The path below CTR_RAW_PATH (the name alone when CTR_RAW_PATH is the file itself).
        case
            when listed.file_path = {{ sql_string(root) }} then regexp_extract(listed.file_path, '([^/]*)$', 1)
            else substring(listed.file_path, {{ (root or '') | length + 2 }})
        end as source_file,
        listed.file_path,
        listed.modification_time,
        listed.size_bytes,
        readable.file_path is not null as is_read
    from listed
    left join readable
        on listed.file_path = readable.file_path

),

previous as (
    {%- if audit %}

    select
        source_file,
        modification_time,
        size_bytes,
        dates,
        records,
        staged,
        quarantined,
        loaded_at,
        true as finished
    from {{ audit }}
    {%- else %}

    select
        cast(null as string) as source_file,
        cast(null as timestamp) as modification_time,
        cast(null as bigint) as size_bytes,
        cast(null as array<date>) as dates,
        cast(null as bigint) as records,
        cast(null as bigint) as staged,
        cast(null as bigint) as quarantined,
        cast(null as timestamp) as loaded_at,
        true as finished
    from (select 1)
    where false
    {%- endif %}
    {%- if unfinished %}

    union all

    select
        source_file,
        null,
        null,
        array_sort(collect_set(if(reject_reason is null, date, null))),
        null,
        null,
        null,
        null,
        false
    from {{ records }}
    where {{ in_list('source_file', unfinished) }}
    group by source_file
    {%- endif %}

),

final as (

    select
        coalesce(current_files.source_file, previous.source_file) as source_file,
        case
            when current_files.is_read and previous.source_file is null then 'new'
            when current_files.is_read
                and previous.finished
                and previous.modification_time = current_files.modification_time
                and previous.size_bytes = current_files.size_bytes
                {%- if rebuild_from or rebuild_to %}
                and not exists(previous.dates, d -> {{ date_range('d', rebuild_from, rebuild_to) }})
                {%- endif %}
                then 'unchanged'
            when current_files.is_read then 'changed'
            when previous.source_file is not null then 'removed'
            else 'ignored'
        end as status,
        current_files.file_path,
        current_files.modification_time,
        current_files.size_bytes,
        previous.dates as previous_dates,
        previous.records as previous_records,
        previous.staged as previous_staged,
        previous.quarantined as previous_quarantined,
        previous.loaded_at as previous_loaded_at
    from current_files
    full outer join previous
        on current_files.source_file = previous.source_file

)

select * from final
