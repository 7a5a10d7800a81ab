"""Spark's TorchDistributor launches the trainer's own entry point (trainer/__main__.py) as a file.

In `local_mode` it runs torchrun on the driver, so two gloo ranks on this machine stand in for a
cluster's executors; the content-id tables (`--tokens`) take sparse gradients under DDP here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthetic.sample_table import write_sample_table
from trainer.table import Table

ENTRY_POINT = Path(__file__).resolve().parents[1] / "trainer" / "__main__.py"

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def test_torch_distributor_runs_the_trainer_file_on_two_processes(spark, tmp_path, capsys):
    from pyspark.ml.torch.distributor import TorchDistributor

    table = write_sample_table(tmp_path / "table", rows_per_day=1500, days=6, seed=5, files_per_day=3)
    runs = tmp_path / "runs"
    runs.mkdir()
    out = runs / "mmoe-td"
    TorchDistributor(num_processes=2, local_mode=True, use_gpu=False).run(
        str(ENTRY_POINT), "fit", "mmoe", "--tokens", "--table", str(table), "--out", str(out),
        "--epochs", "2", "--threads", "1", "--batch-size", "256", "--seed", "3", "--quiet")
    # TorchDistributor writes the ranks' output to this process's stdout
    launched = capsys.readouterr().out
    assert "2 processes" in launched, launched[-2000:]
    assert [p.name for p in runs.iterdir()] == ["mmoe-td"]  # rank 0 alone wrote, atomically
    for f in ("config.json", "model.safetensors", "preprocessing.json", "metrics.json", "history.json",
              "scores_val.parquet", "scores_test.parquet", "cold_start.md", "text/token_vocab.json"):
        assert (out / f).is_file(), f
    metrics = json.loads((out / "metrics.json").read_text())
    t = Table(table)
    assert metrics["test"]["n"] == t.count_rows(t.fragments(metrics["split"]["test_days"]))
    assert metrics["val"]["n"] == t.count_rows(t.fragments(metrics["split"]["val_days"]))
    assert 0.5 < metrics["test"]["auc"] < 1.0  # the planted signal is learnt, not noise
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
