{#- Grain: one row per (user_id, date) where the user has an impression on date; the user as of the start of date. -#}
{{ config(partition_by=['date']) }}

{{ history_features('int_user_daily', 'user_id', 'u') }}
