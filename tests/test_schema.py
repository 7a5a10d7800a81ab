"""The Python schema module and the dbt project's vars state the same facts."""

from pathlib import Path

import yaml

from m2ctr import schema

ROOT = Path(__file__).resolve().parents[1]


def test_dbt_vars_agree_with_python_schema():
    dbt_vars = yaml.safe_load((ROOT / "warehouse" / "dbt_project.yml").read_text())["vars"]
    assert tuple(dbt_vars["scenes"]) == schema.SCENES
    assert dbt_vars["n_deep_features"] == schema.N_DEEP_FEATURES
    assert tuple(dbt_vars["text_columns"]) == schema.TEXT_COLUMNS
    assert tuple(dbt_vars["reject_reasons"]) == schema.REJECT_REASONS


def test_cold_buckets_follow_the_threshold():
    assert schema.cold_bucket([0, 1, schema.FEW_MAX, schema.FEW_MAX + 1, 100]).tolist() == [
        schema.ZERO, schema.FEW, schema.FEW, schema.WARM, schema.WARM]
    assert len(schema.COLD_BUCKETS) == 3


def test_feature_families_partition_the_history_features():
    families = set(schema.COUNT_COLUMNS) | set(schema.CTR_COLUMNS) | set(schema.FLAG_COLUMNS) | set(
        schema.DAYS_COLUMNS)
    assert families == set(schema.HISTORY_FEATURES)
    assert ("u_clk_7d", "u_imp_7d") in schema.clicks_impressions_pairs(schema.HISTORY_FEATURES)
