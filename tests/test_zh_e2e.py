"""Chinese text end to end: `synthetic generate --lang zh` -> dbt build -> expectations validate ->
trainer fit fusion, with the token channel reading segmented Chinese words."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from expectations.__main__ import main as expectations_main
from trainer.cli import main as trainer_main

pytestmark = [pytest.mark.slow, pytest.mark.spark]

SCHEMA = "m2ctr_zh"


def test_chinese_sample_builds_validates_and_fits_fusion(dbt_build, spark_warehouse_dir, tmp_path,
                                                         monkeypatch, request):
    raw = tmp_path / "raw"
    subprocess.run([sys.executable, "-m", "synthetic", "generate", "--rows", "12000", "--days", "6",
                    "--seed", "3", "--lang", "zh", "--out", str(raw), "--quiet"],
                   cwd=request.config.rootpath, check=True)
    build = dbt_build(raw, SCHEMA)
    assert build.success, build.failures()

    monkeypatch.setenv("CTR_WAREHOUSE_DIR", str(spark_warehouse_dir))
    monkeypatch.setenv("CTR_SCHEMA", SCHEMA)
    monkeypatch.setenv("CTR_RAW_PATH", str(raw))
    report = tmp_path / "quality"
    assert expectations_main(["validate", "--report-dir", str(report)]) == 0
    summary = json.loads((report / "summary.json").read_text())
    assert [e["description"] for s in summary["suites"].values() for e in s["expectations"] if not e["success"]] == []

    run = tmp_path / "run"
    assert trainer_main(["fit", "fusion", "--table", str(build.table_dir("training_samples")), "--out", str(run),
                         "--epochs", "2", "--device", "cpu", "--threads", "2", "--whiten-dim", "16",
                         "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    truth = pq.read_table(raw / "truth.parquet").to_pandas()
    last_day = max(truth["date"].astype(str).unique())
    assert metrics["test"]["n"] == int((truth["date"].astype(str) == last_day).sum())
    assert 0.0 < metrics["test"]["auc"] < 1.0  # 8k training rows: the pipeline, not the quality
    # The token channel holds Chinese words, not whole titles: entities of one list meet titles.
    tokens = json.loads((run / "text" / "token_vocab.json").read_text())["tokens"]
    chinese = [t for t in tokens if any("\u4e00" <= ch <= "\u9fff" for ch in t)]
    assert len(chinese) > 200 and max(map(len, chinese)) <= 6
