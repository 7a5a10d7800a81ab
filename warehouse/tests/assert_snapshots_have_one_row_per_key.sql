-- One row per lookup key in each serving snapshot (a null id is the row for an id without
-- history, one per scene) and one row per scene of the prior: one query. The pair snapshot's one
-- row per pair is checked on its query instead (models/serving/_serving_unit_tests.yml says why).
{{ repeated_keys(ref('user_features_snapshot'), ['user_id', 'scene'], nullable=true) }}

union all

{{ repeated_keys(ref('item_features_snapshot'), ['item_id', 'scene'], nullable=true) }}

union all

{{ repeated_keys(ref('scene_prior_snapshot'), ['scene']) }}
