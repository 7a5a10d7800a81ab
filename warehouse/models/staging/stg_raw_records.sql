{#-
  Every raw CSV record of this run's files (new or changed, see stg_raw_files; header lines
  excluded), its fields mapped to the canonical columns, typed, and either accepted (reject_reason
  null) or given the first reason it fails. This is the only model that reads the CSV: each file is
  parsed once, when it is new or changed, in a single scan (a multi-line CSV file is parsed by one
  task), and everything downstream reads this table. A second, plain scan of the same lines finds
  each file's header. stg_impressions and quarantine_impressions split it, so every record lands
  in exactly one of them.
  Partitioned by source_file: a run writes the partitions of the files it parsed and drops those of
  changed and removed files, so a re-delivered file replaces its own records and nothing else. It
  is where later runs find the records of unchanged files when they restage a day.
-#}
{{ config(materialized='incremental', partition_by=['source_file'], meta={'partition_scope': 'files'}) }}
{%- set raw_cols = raw_columns() -%}
{%- set n_cols = raw_cols | length -%}
{%- set reasons = var('reject_reasons') -%}
{%- set plan = file_plan() -%}

with source as (

    -- Only this run's files: the filter on the file path prunes the others before Spark opens them.
    select *, _metadata.file_path as file_path
    from {{ source('raw', 'impressions_csv') }}
    where {{ in_list('_metadata.file_path', plan.batch_paths, plan.full) }}

),

files as (

    select source_file, file_path
    from {{ ref('stg_raw_files') }}
    where status in ('new', 'changed')

),

header_lines as (

    -- A header is a line whose first two names are the first two raw columns (quoted or not), the
    -- same test as for a parsed record (is_header below). Read as plain lines, it is found without
    -- ordering every record of its file; a file with several header lines takes the least.
    select
        _metadata.file_path as file_path,
        split(regexp_replace(value, '["\r]', ''), ',', -1) as names
    from {{ source('raw', 'csv_lines') }}
    where {{ in_list('_metadata.file_path', plan.batch_paths, plan.full) }}
        and (startswith(value, '{{ raw_cols[0] }}') or startswith(value, '"{{ raw_cols[0] }}"'))

),

headers as (

    -- where each canonical column sits in the file's header (0 = absent)
    select
        files.source_file,
        size(min(header_lines.names)) as header_fields,
        {%- for c in raw_cols %}
        cast(array_position(min(header_lines.names), '{{ c }}') as int) as pos_{{ c }}{{ ',' if not loop.last }}
        {%- endfor %}
    from header_lines
    join files
        on header_lines.file_path = files.file_path
    where {{ is_header_line('header_lines.names[0]', 'header_lines.names[1]') }}
    group by files.source_file

),

parsed as (

    select /*+ broadcast(files) */
        files.source_file,
        {%- for c in raw_cols %}
        c{{ loop.index0 }},
        {%- endfor %}
        regexp_replace(_corrupt_record, '\r$', '') as corrupt_text,
        -- Spark fills _corrupt_record only when a record does not have exactly {{ n_cols }} fields;
        -- then its field count is the number of commas outside quoted sections, plus one.
        case
            when _corrupt_record is null then {{ n_cols }}
            else size(split(regexp_replace(_corrupt_record, '"([^"]|"")*"', ''), ',', -1))
        end as n_fields
    from source
    join files
        on source.file_path = files.file_path

),

fields as (

    -- Spark guesses a file's line separator from its first line break, which may sit inside a
    -- quoted field; then the last field of each \r\n-terminated record keeps a trailing \r.
    select
        source_file,
        array(
            {%- for c in raw_cols %}
            if(n_fields = {{ loop.index }} and endswith(c{{ loop.index0 }}, '\r'),
               left(c{{ loop.index0 }}, length(c{{ loop.index0 }}) - 1),
               c{{ loop.index0 }}){{ ',' if not loop.last }}
            {%- endfor %}
        ) as vals,
        corrupt_text,
        n_fields,
        {{ is_header_line('c0', 'c1') }} as is_header
    from parsed

),

hashed as (

    select
        *,
        sha2(
            concat_ws('\u001f', coalesce(corrupt_text, ''), array_join(vals, '\u001f', '\u0000')),
            256
        ) as record_hash
    from fields

),

numbered as (

    -- An occurrence number that tells byte-identical records of one file apart (which copy gets
    -- which number does not matter: the set of ids is the same on every rebuild). Partitioned by
    -- the file alone, so that each file's records are written together: partitioned by the hash
    -- too, every task writes a part of every file, and the models that read this one slow down.
    select
        *,
        row_number() over file_by_hash - rank() over file_by_hash + 1 as occurrence
    from hashed
    window file_by_hash as (partition by source_file order by record_hash)

),

records as (

    select
        source_file,
        vals,
        corrupt_text,
        n_fields,
        record_hash,
        occurrence,
        coalesce(header_fields, {{ n_cols }}) as expected_fields,
        {%- for c in raw_cols %}
        case
            when header_fields is null then vals[{{ loop.index0 }}]
            when pos_{{ c }} > 0 then element_at(vals, pos_{{ c }})
        end as {{ c }}_raw{{ ',' if not loop.last }}
        {%- endfor %}
    from numbered
    left join headers using (source_file)
    where not is_header

),

typed as (

    select
        *,
        {{ parse_log_time('log_time_raw') }} as log_ts,
        case when trim(label_raw) in ('0', '1') then cast(trim(label_raw) as int) end as label,
        case
            when trim(scene_raw) in ({% for s in scenes() %}'{{ s }}'{{ ', ' if not loop.last }}{% endfor %})
                then cast(trim(scene_raw) as int)
        end as scene
    from records

),

checked as (

    -- The first failing check names the record's reason; var reject_reasons lists them in this order.
    {%- set checks = {
        'too_few_fields': 'n_fields < expected_fields',
        'too_many_fields': 'n_fields > expected_fields',
        'missing_user_id': "user_id_raw is null or trim(user_id_raw) = ''",
        'missing_item_id': "item_id_raw is null or trim(item_id_raw) = ''",
        'bad_log_time': 'log_ts is null',
        'bad_label': 'label is null',
        'bad_scene': 'scene is null',
    } %}
    {%- if reasons | reject('in', checks) | list or checks | reject('in', reasons) | list %}
    {{ exceptions.raise_compiler_error('var reject_reasons ' ~ reasons ~ ' and the checks of stg_raw_records ' ~ (checks.keys() | list) ~ ' differ') }}
    {%- endif %}
    select
        *,
        case
            {%- for reason in reasons %}
            when {{ checks[reason] }} then '{{ reason }}'
            {%- endfor %}
        end as reject_reason
    from typed

),

final as (

    select
        sha2(concat_ws('|', source_file, record_hash, cast(occurrence as string)), 256) as impression_id,
        reject_reason,
        case
            when reject_reason is not null then coalesce(
                corrupt_text,
                -- Spark keeps no raw text of a record with exactly {{ n_cols }} fields: write them back as CSV.
                concat_ws(
                    ',',
                    {%- for c in raw_cols %}
                    {{ csv_field('vals[' ~ loop.index0 ~ ']') }}{{ ',' if not loop.last }}
                    {%- endfor %}
                )
            )
        end as raw_record,
        user_id_raw as user_id,
        item_id_raw as item_id,
        scene,
        label,
        log_ts,
        to_date(log_ts) as date,
        {%- for c in text_columns() %}
        coalesce({{ c }}_raw, '') as {{ c }},
        {%- endfor %}
        {%- for c in deep_feature_columns() %}
        coalesce(try_cast({{ c }}_raw as double), 0.0) as {{ c }},
        {%- endfor %}
        source_file
    from checked

)

select * from final
