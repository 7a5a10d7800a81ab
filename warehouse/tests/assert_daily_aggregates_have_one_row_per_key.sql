-- One row per key and day in each daily aggregate, on the days this run wrote: one query for the
-- four tables, each failing key named with its table.
{{ repeated_keys(ref('int_user_daily'), ['user_id', 'date']) }}

union all

{{ repeated_keys(ref('int_item_daily'), ['item_id', 'date']) }}

union all

{{ repeated_keys(ref('int_user_item_daily'), ['user_id', 'item_id', 'date']) }}

union all

{{ repeated_keys(ref('int_scene_daily'), ['scene', 'date']) }}
