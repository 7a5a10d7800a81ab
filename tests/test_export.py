"""trainer export: every model's scoring graph as ONNX agrees with PyTorch on every test row."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from synthetic.sample_table import write_sample_table
from trainer.artifacts import ExportDir
from trainer.cli import main
from trainer.export import OnnxModel
from trainer.models import MODELS
from trainer.scoring import load_run, score, to_model
from trainer.table import Table


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    return write_sample_table(tmp_path_factory.mktemp("tbl") / "training_samples", rows_per_day=800, days=5, seed=3)


# fusion's mixture of click probabilities takes its logit through log-space operations of its own
CASES = [(name, []) for name in MODELS] + [("fusion", ["--hp", 'mix="probability"'])]


@pytest.mark.parametrize(("name", "options"), CASES, ids=[n + ("-probability" if o else "") for n, o in CASES])
def test_onnx_graph_equals_torch_on_every_test_row(table, tmp_path, name, options):
    run_dir, out = tmp_path / "run", tmp_path / "onnx"
    assert main(["fit", name, "--table", str(table), "--out", str(run_dir), "--epochs", "1", "--threads", "1",
                 "--cache-dir", str(tmp_path / "cache"), "--quiet", *options]) == 0
    assert load_run(run_dir, "cpu").cfg["hparams"].get("mix", "convex") == (
        "probability" if options else "convex")
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    onnx.checker.check_model(str(out / ExportDir.GRAPH))
    manifest = json.loads((out / ExportDir.MANIFEST).read_text())
    graph = OnnxModel(out)
    assert [i["name"] for i in manifest["inputs"]] == graph.names
    assert "scene" in graph.names and "label" not in graph.names

    run = load_run(run_dir, "cpu")
    assert manifest["calibration"] == run.calibration.method != "none"
    t = Table(run.cfg["table"], need_text=run.features.featurizer is not None)
    got, want = [], []
    for batch in t.batches(run.cfg["split"]["test_days"], run.features.columns, 300):  # several batch sizes
        arrays = run.features(batch)
        rows = score(run.model, [arrays], run.features, run.device)
        want.append(run.calibration(rows["probability"], rows["scene"]))
        got.append(graph(to_model(arrays, run.features, torch.device("cpu"))))
    got, want = np.concatenate(got), np.concatenate(want)
    assert len(got) == 800
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.std(want) > 0.005  # varied scores, not constants


def test_export_of_a_non_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 1
    assert "not a complete run directory" in capsys.readouterr().err
