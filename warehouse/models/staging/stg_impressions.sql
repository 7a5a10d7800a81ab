{#-
  One row per clean raw record, typed. Partitioned by date and scene; a run rewrites the restaged
  days only, from the stored records of the files that hold them (stg_raw_records), so an
  unchanged file is never parsed again.
-#}
{{ config(materialized='incremental', partition_by=['date', 'scene'], meta={'partition_scope': 'restaged'}) }}
{%- set plan = build_plan() -%}

with records as (

    select * from {{ ref('stg_raw_records') }}
    where reject_reason is null
        and {{ in_list('source_file', plan.covering_files, plan.full) }}
        and {{ in_list('date', plan.restaged, plan.full, dates=true) }}

),

final as (

    select
        impression_id,
        user_id,
        item_id,
        label,
        log_ts,
        {{ payload_columns() }},
        source_file,
        date,
        scene
    from records

)

select * from final
