{#- Every item with impressions before rebuild_from: totals (and per scene), first and last day, as of that day. -#}
{{ entity_state('int_item_daily', 'item_features_snapshot', 'item_id', 'i') }}
