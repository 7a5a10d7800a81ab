{#- One row per user and day with impressions: that day's impressions and clicks, in total and per scene. -#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'restaged'}) }}

{{ daily_activity('user_id') }}
