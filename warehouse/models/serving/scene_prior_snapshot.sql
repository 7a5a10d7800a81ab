{#- Grain: one row per scene (var scenes): its smoothing prior as of the start of `date`, the day after the last day with data. -#}
{{ scene_priors(as_of=true) }}
