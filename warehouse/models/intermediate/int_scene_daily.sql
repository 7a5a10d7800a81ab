{#- One row per scene and day with impressions: that day's impressions and clicks. -#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'restaged'}) }}

{{ daily_activity('scene', by_scene=false) }}
