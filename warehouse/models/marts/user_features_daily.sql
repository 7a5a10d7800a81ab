{#- Grain: one row per (user_id, date) where the user has an impression on date; the user as of the start of date. -#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'rebuilt'}) }}

{{ entity_history('int_user_daily', 'int_user_state', 'user_id', 'u') }}
