{#-
  One row per rejected raw record. Partitioned by source_file, not by date: a record rejected for
  its time has no date, and keyed by its file it still lands exactly once (a re-delivered file
  replaces its partition, a removed file's partition is dropped).
-#}
{{ config(materialized='incremental', partition_by=['source_file'], meta={'partition_scope': 'files'}) }}
{%- set plan = file_plan() -%}

with records as (

    select * from {{ ref('stg_raw_records') }}
    where reject_reason is not null
        and {{ in_list('source_file', plan.batch_files, plan.full) }}

),

final as (

    select
        impression_id,
        reject_reason,
        raw_record,
        source_file
    from records

)

select * from final
