-- One row per key and day in each feature mart, on the days this run rebuilt: one query for the
-- three tables. (training_samples: assert_training_rows_equal_staged holds each id exactly once.)
{{ repeated_keys(ref('user_features_daily'), ['user_id', 'date']) }}

union all

{{ repeated_keys(ref('item_features_daily'), ['item_id', 'date']) }}

union all

{{ repeated_keys(ref('user_item_history'), ['user_id', 'item_id', 'date']) }}
