{#-
  Every raw CSV record (header lines excluded), its fields mapped to the canonical columns, typed,
  and either accepted (reject_reason null) or given the first reason it fails. stg_impressions and
  quarantine_impressions split this table, so every record lands in exactly one of them.
  Partitioned by source_file: a run writes the partitions of the files it parsed and drops those of
  changed and removed files, so a re-delivered file replaces its own records and nothing else. It
  is where later runs find the records of unchanged files when they restage a day.
-#}
{{ config(materialized='incremental', partition_by=['source_file'], meta={'partition_scope': 'files'}) }}
{%- set raw_cols = raw_columns() -%}
{%- set n_cols = raw_cols | length -%}
{%- set reasons = var('reject_reasons') -%}
{%- do file_plan() -%}

with raw as (

    select * from {{ ref('base_raw_impressions') }}

),

headers as (

    -- A file with a header: where each canonical column sits in it (0 = absent).
    select
        source_file,
        first(n_fields) as header_fields,
        {%- for c in raw_cols %}
        cast(first(array_position(vals, '{{ c }}')) as int) as pos_{{ c }}{{ ',' if not loop.last }}
        {%- endfor %}
    from raw
    where is_header
    group by source_file

),

duplicated as (

    -- Byte-identical records of one file (rare): only these need an occurrence number, so only
    -- their keys are aggregated and only their rows are shuffled to number them.
    select
        source_file,
        record_hash
    from raw
    where not is_header
    group by source_file, record_hash
    having count(*) > 1

),

numbered as (

    select /*+ broadcast(duplicated) */
        raw.*,
        1 as occurrence
    from raw
    left anti join duplicated
        on raw.source_file = duplicated.source_file
        and raw.record_hash = duplicated.record_hash
    where not raw.is_header

    union all

    -- Identical records get distinct ids through their occurrence number; which copy gets
    -- which number does not matter, the set of ids is the same on every rebuild.
    select /*+ broadcast(duplicated) */
        raw.*,
        row_number() over (
            partition by raw.source_file, raw.record_hash order by raw.record_hash
        ) as occurrence
    from raw
    left semi join duplicated
        on raw.source_file = duplicated.source_file
        and raw.record_hash = duplicated.record_hash
    where not raw.is_header

),

records as (

    -- At most one header row per file: broadcast, so the records are not shuffled for the join.
    select /*+ broadcast(headers) */
        numbered.source_file,
        numbered.vals,
        numbered.corrupt_text,
        numbered.n_fields,
        numbered.record_hash,
        numbered.occurrence,
        coalesce(headers.header_fields, {{ n_cols }}) as expected_fields,
        {%- for c in raw_cols %}
        case
            when headers.source_file is null then numbered.vals[{{ loop.index0 }}]
            when headers.pos_{{ c }} > 0 then element_at(numbered.vals, headers.pos_{{ c }})
        end as {{ c }}_raw{{ ',' if not loop.last }}
        {%- endfor %}
    from numbered
    left join headers
        on numbered.source_file = headers.source_file

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
