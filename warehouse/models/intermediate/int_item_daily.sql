{#- One row per item and day with impressions: that day's impressions and clicks, in total and per scene. -#}
{{ daily_activity('item_id') }}
