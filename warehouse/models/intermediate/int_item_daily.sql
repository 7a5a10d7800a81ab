{#- One row per item and day with impressions: that day's impressions and clicks, in total and per scene. -#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'restaged'}) }}

{{ daily_activity('item_id') }}
