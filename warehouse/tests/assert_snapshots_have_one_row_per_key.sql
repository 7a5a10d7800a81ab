-- One row per lookup key in each serving snapshot (a null id is the row for an id without
-- history, one per scene or one in all), and one row per scene of the prior: one query.
{{ repeated_keys(ref('user_features_snapshot'), ['user_id', 'scene'], nullable=true) }}

union all

{{ repeated_keys(ref('item_features_snapshot'), ['item_id', 'scene'], nullable=true) }}

union all

{{ repeated_keys(ref('user_item_snapshot'), ['user_id', 'item_id'], nullable=true) }}

union all

{{ repeated_keys(ref('scene_prior_snapshot'), ['scene']) }}
