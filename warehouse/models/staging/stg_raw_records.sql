{#-
  Every raw CSV record (header lines excluded), its fields mapped to the canonical columns, typed,
  and either accepted (reject_reason null) or given the first reason it fails. stg_impressions and
  quarantine_impressions split this table, so every record lands in exactly one of them.
-#}
{%- set raw_cols = raw_columns() -%}
{%- set n_cols = raw_cols | length -%}

with source as (

    select * from {{ source('raw', 'impressions_csv') }}

),

parsed as (

    select
        regexp_extract(input_file_name(), '([^/]*)$', 1) as source_file,
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

headers as (

    -- A file with a header: where each canonical column sits in it (0 = absent).
    select
        source_file,
        first(n_fields) as header_fields,
        {%- for c in raw_cols %}
        cast(first(array_position(vals, '{{ c }}')) as int) as pos_{{ c }}{{ ',' if not loop.last }}
        {%- endfor %}
    from fields
    where is_header
    group by source_file

),

records as (

    select
        fields.source_file,
        fields.vals,
        fields.corrupt_text,
        fields.n_fields,
        coalesce(headers.header_fields, {{ n_cols }}) as expected_fields,
        {%- for c in raw_cols %}
        case
            when headers.source_file is null then fields.vals[{{ loop.index0 }}]
            when headers.pos_{{ c }} > 0 then element_at(fields.vals, headers.pos_{{ c }})
        end as {{ c }}_raw{{ ',' if not loop.last }}
        {%- endfor %}
    from fields
    left join headers
        on fields.source_file = headers.source_file
    where not fields.is_header

),

typed as (

    select
        *,
        case
            when trim(log_time_raw) rlike '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$'
                then to_timestamp(trim(log_time_raw), 'yyyy-MM-dd HH:mm:ss')
            when trim(log_time_raw) rlike '^[0-9]{4}/[0-9]{1,2}/[0-9]{1,2} [0-9]{1,2}:[0-9]{2}$'
                then to_timestamp(trim(log_time_raw), 'yyyy/M/d H:mm')
        end as log_ts,
        case when trim(label_raw) in ('0', '1') then cast(trim(label_raw) as int) end as label,
        case when trim(scene_raw) in ('0', '1', '2', '3', '4') then cast(trim(scene_raw) as int) end as scene,
        sha2(
            concat_ws('\u001f', coalesce(corrupt_text, ''), array_join(vals, '\u001f', '\u0000')),
            256
        ) as record_hash
    from records

),

checked as (

    select
        *,
        case
            when n_fields < expected_fields then 'too_few_fields'
            when n_fields > expected_fields then 'too_many_fields'
            when user_id_raw is null or trim(user_id_raw) = '' then 'missing_user_id'
            when item_id_raw is null or trim(item_id_raw) = '' then 'missing_item_id'
            when log_ts is null then 'bad_log_time'
            when label is null then 'bad_label'
            when scene is null then 'bad_scene'
        end as reject_reason,
        -- Identical records get distinct ids through their occurrence number; which copy gets
        -- which number does not matter, the set of ids is the same on every rebuild.
        row_number() over (partition by source_file, record_hash order by record_hash) as occurrence
    from typed

),

final as (

    select
        sha2(concat_ws('|', source_file, record_hash, cast(occurrence as string)), 256) as impression_id,
        source_file,
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
        coalesce(cast({{ c }}_raw as double), 0.0) as {{ c }}{{ ',' if not loop.last }}
        {%- endfor %}
    from checked

)

select * from final
