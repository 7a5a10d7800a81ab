{#- Not partitioned: a record rejected for its time has no date. -#}
with records as (

    select * from {{ ref('stg_raw_records') }}

),

final as (

    select
        impression_id,
        source_file,
        reject_reason,
        raw_record
    from records
    where reject_reason is not null

)

select * from final
