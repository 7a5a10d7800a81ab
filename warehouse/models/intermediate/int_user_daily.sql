{#- One row per user and day with impressions: that day's impressions and clicks, in total and per scene. -#}
{{ daily_activity('user_id') }}
