{#- Grain: one row per (item_id, date) where the item has an impression on date; the item as of the start of date. -#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'rebuilt'}) }}

{{ entity_history('int_item_daily', 'int_item_state', 'item_id', 'i') }}
