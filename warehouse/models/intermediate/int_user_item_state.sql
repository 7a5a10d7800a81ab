{#- Every (user, item) pair with impressions before rebuild_from: impressions, clicks and last day, as of that day. -#}
{{ pair_state('int_user_item_daily', 'user_item_snapshot') }}
