{#- Grain: one row per (user_id, item_id, date) where the user saw the item on date; the pair's history before date. -#}
{{ config(materialized='incremental', partition_by=['date'], meta={'partition_scope': 'rebuilt'}) }}

{{ pair_history('int_user_item_daily', 'int_user_item_state') }}
