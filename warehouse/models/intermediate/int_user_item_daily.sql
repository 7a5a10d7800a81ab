{#- One row per (user, item) pair and day with impressions of that item to that user. -#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'restaged'}) }}

{{ daily_activity('user_id, item_id', by_scene=false) }}
