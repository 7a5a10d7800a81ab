-- One row per lookup key in each serving snapshot (a null id is the row for an id without
-- history, one per scene) and one row per scene of the prior: one query. The pair snapshot, the
-- largest table (every pair ever seen), is checked on its query instead of its data: a table
-- written whole by one query on every run, not partitions an incremental run could write twice,
-- its one row per pair is that query's group by, pinned by the unit test
-- the_pair_snapshot_has_one_row_per_pair
-- (models/serving/_serving_unit_tests.yml). On data the check was a shuffle of every pair on every
-- run, 12.5 s of the 192 s of task time of a new day at 10M rows.
{{ repeated_keys(ref('user_features_snapshot'), ['user_id', 'scene'], nullable=true) }}

union all

{{ repeated_keys(ref('item_features_snapshot'), ['item_id', 'scene'], nullable=true) }}

union all

{{ repeated_keys(ref('scene_prior_snapshot'), ['scene']) }}
