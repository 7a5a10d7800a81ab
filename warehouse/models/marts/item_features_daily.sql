{#- Grain: one row per (item_id, date) where the item has an impression on date; the item as of the start of date. -#}
{{ config(partition_by=['date']) }}

{{ history_features('int_item_daily', 'item_id', 'i') }}
