{#- Grain: one row per (user_id, scene), plus a null user_id row per scene: the u_* columns of training_samples as of the day after the last day (macros/side_snapshot.sql). -#}
{{ config(partition_by=['scene']) }}
{{ side_snapshot('u') }}
