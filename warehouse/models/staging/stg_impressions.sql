{{ config(partition_by=['date', 'scene']) }}

with records as (

    select * from {{ ref('stg_raw_records') }}

),

final as (

    select
        impression_id,
        user_id,
        item_id,
        label,
        log_ts,
        {%- for c in text_columns() %}
        {{ c }},
        {%- endfor %}
        {%- for c in deep_feature_columns() %}
        {{ c }},
        {%- endfor %}
        source_file,
        date,
        scene
    from records
    where reject_reason is null

)

select * from final
