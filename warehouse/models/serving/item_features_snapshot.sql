{#- Grain: one row per (item_id, scene), plus a null item_id row per scene: the i_* columns of training_samples as of the day after the last day (macros/side_snapshot.sql). -#}
{{ config(partition_by=['scene']) }}
{{ side_snapshot('i') }}
