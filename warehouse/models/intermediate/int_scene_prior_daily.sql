{#-
  One row per scene and day with impressions: the scene's click rate over all earlier days, the
  prior of the smoothed CTRs. The first day of a scene has no history and takes var ctr_prior_default.
  Rebuilt whole on every run: it reads int_scene_daily, a few rows per day.
-#}
{{ scene_priors() }}
