"""The trainer on a training_samples table built by the real warehouse (synthetic CSV -> dbt build)."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from trainer.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.spark]


@pytest.fixture(scope="module")
def warehouse_table(dbt_build, tmp_path_factory, request):
    raw = tmp_path_factory.mktemp("trainer-raw") / "raw"
    subprocess.run([sys.executable, "-m", "synthetic", "generate", "--rows", "4000", "--days", "5",
                    "--seed", "11", "--parts", "2", "--out", str(raw), "--quiet"],
                   cwd=request.config.rootpath, check=True)
    build = dbt_build(raw, "wh_trainer", "--select", "+training_samples", "--exclude", "resource_type:test")
    assert build.success, build.failures()
    return build.table_dir("training_samples"), raw


def test_fit_evaluate_predict_on_the_warehouse_table(warehouse_table, tmp_path, capsys):
    table, raw = warehouse_table
    run = tmp_path / "run"
    assert main(["fit", "mmoe", "--table", str(table), "--out", str(run), "--epochs", "8",
                 "--patience", "8", "--batch-size", "256", "--threads", "1", "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    truth = pq.read_table(raw / "truth.parquet").to_pandas()
    days = sorted(truth["date"].astype(str).unique())
    assert metrics["split"]["test_days"] == days[-1:]
    # every clean record of the test day reaches the trainer
    assert metrics["test"]["n"] == int((truth["date"].astype(str) == days[-1]).sum())
    assert metrics["test"]["auc"] > 0.6  # ~3k training rows: a weak but real signal
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    assert json.loads(capsys.readouterr().out) == metrics
    out = tmp_path / "pred.parquet"
    assert main(["predict", str(run), "--table", str(table), "--out", str(out)]) == 0
    assert pq.read_table(out).num_rows == len(truth)
