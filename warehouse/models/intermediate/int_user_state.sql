{#- Every user with impressions before rebuild_from: totals (and per scene), first and last day, as of that day. -#}
{{ entity_state('int_user_daily', 'user_features_snapshot', 'user_id', 'u') }}
