"""synthetic/sample_table.py against the warehouse: the same records through a real `dbt build` give
the same features, feature for feature (smoothing weight, point-in-time scene priors, windows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from m2ctr.schema import DEEP_FEATURES, HISTORY_FEATURES, TEXT_COLUMNS
from synthetic.sample_table import make_samples

pytestmark = [pytest.mark.slow, pytest.mark.spark]
KEYS = ["user_id", "item_id", "log_ts"]


def wall_clock(ts: pd.Series) -> pd.Series:
    """Timestamps as naive UTC wall clock in ns (Spark's session time zone is UTC)."""
    ts = pd.to_datetime(ts)
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.astype("datetime64[ns]")


def test_sample_table_equals_a_dbt_build_of_its_records(dbt_build, tmp_path):
    tables, _ = make_samples(rows_per_day=150, days=9, seed=4)  # more than a 7-day window
    sample = pa.concat_tables(tables).to_pandas()
    raw = tmp_path / "raw"
    raw.mkdir()
    records = sample[["user_id", "item_id"]].assign(
        log_time=sample["log_ts"].dt.strftime("%Y-%m-%d %H:%M:%S"), label=sample["label"],
        **{c: sample[c] for c in TEXT_COLUMNS}, scene=sample["scene"],
        **{c: sample[c] for c in DEEP_FEATURES})
    records.to_csv(raw / "part-0.csv", index=False)

    build = dbt_build(raw, "sample_fixture", "--select", "+training_samples", "--exclude", "resource_type:test")
    assert build.success, build.failures()
    built = ds.dataset(str(build.table_dir("training_samples")), format="orc", partitioning="hive").to_table(
        columns=[*KEYS, *HISTORY_FEATURES]).to_pandas()
    built["log_ts"], sample["log_ts"] = wall_clock(built["log_ts"]), wall_clock(sample["log_ts"])
    assert len(built) == len(sample)
    # a key the join could not tell apart (the same pair in the same second) is left out of it
    sample, built = (t.drop_duplicates(KEYS, keep=False) for t in (sample, built))
    both = sample[[*KEYS, *HISTORY_FEATURES]].merge(built, on=KEYS, suffixes=("", "_dbt"), validate="1:1")
    assert len(both) == len(sample) > 0.99 * len(built)
    differ = {c: int((~np.isclose(both[c].astype(float), both[f"{c}_dbt"].astype(float),
                                  rtol=1e-9, atol=1e-12)).sum())
              for c in HISTORY_FEATURES}
    assert not {c: n for c, n in differ.items() if n}, differ
    assert both["u_ctr_cum_smooth"].nunique() > 10  # the smoothed CTRs were compared on real values
    assert pd.Series(both["i_imp_7d"] < both["i_imp_cum"]).any()  # and the window cut something


def test_topic_effects_stop_after_topic_days():
    """`topic_days`: the same world, with the topic effects on the first days only, so text that
    helped on the training days says nothing after them."""
    kwargs = {"rows_per_day": 2000, "days": 6, "seed": 1, "topic_effect": 2.5, "topic_affinity": 2.0}
    tables, always = make_samples(**kwargs)
    _, stopped = make_samples(**kwargs, topic_days=4)
    day = np.concatenate([np.full(t.num_rows, d) for d, t in enumerate(tables)])
    np.testing.assert_array_equal(stopped[day < 4], always[day < 4])
    assert np.abs(stopped[day >= 4] - always[day >= 4]).max() > 0.1
    # after the topic days the click probability no longer differs by the item's topic
    item_topic = np.concatenate([t.column("item_entity_names").to_numpy(zero_copy_only=False) for t in tables])
    late = day >= 4
    by_topic = pd.Series(np.log(stopped[late] / (1 - stopped[late]))).groupby(item_topic[late]).mean()
    by_topic_always = pd.Series(np.log(always[late] / (1 - always[late]))).groupby(item_topic[late]).mean()
    assert by_topic.max() - by_topic.min() < (by_topic_always.max() - by_topic_always.min()) / 2
