{#-
  The raw CSV files of this run (new or changed, see stg_raw_files) parsed once and stored as ORC:
  one row per CSV record (header lines included), every field a string, with the record's field
  count and a hash of its text. Only those files are read: the filter on the file path prunes the
  others before Spark opens them. A multi-line CSV file is parsed by a single task, so every later
  reader (stg_raw_records reads it several times, the row conservation test counts it) reads this
  table instead of parsing the CSV again. Replaced on every run.
-#}
{%- set raw_cols = raw_columns() -%}
{%- set n_cols = raw_cols | length -%}
{%- set plan = file_plan() -%}

with source as (

    select *, _metadata.file_path as file_path
    from {{ source('raw', 'impressions_csv') }}
    where {{ in_list('_metadata.file_path', plan.batch_paths, plan.full) }}

),

files as (

    select source_file, file_path
    from {{ ref('stg_raw_files') }}
    where status in ('new', 'changed')

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
        end as n_fields,
        coalesce(c0 = 'user_id' and c1 = 'item_id', false) as is_header
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
        is_header
    from parsed

),

final as (

    select
        source_file,
        vals,
        corrupt_text,
        n_fields,
        is_header,
        sha2(
            concat_ws('\u001f', coalesce(corrupt_text, ''), array_join(vals, '\u001f', '\u0000')),
            256
        ) as record_hash
    from fields

)

select * from final
