"""`python -m trainer fit fusion` and `ladder` end to end on a small training_samples table,
with the real bundled text encoder."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from pyarrow import orc

from synthetic.sample_table import write_sample_table
from trainer.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Tables a and b share their training days; b's validation and test days carry other text."""
    root = tmp_path_factory.mktemp("fusion")
    a = write_sample_table(root / "a", rows_per_day=400, days=4, seed=0)
    b = write_sample_table(root / "b", rows_per_day=400, days=4, seed=0)
    for day in sorted(b.glob("date=*"))[-2:]:
        t = orc.read_table(str(day / "part-0.orc"))
        for col in ("item_title", "query_entity_seq"):
            t = t.set_column(t.schema.get_field_index(col), col,
                             pa.array([f"unrelated words number {k % 10}" for k in range(t.num_rows)]))
        orc.write_table(t, str(day / "part-0.orc"))
    return root, a, b


def fit(root, table, out, *extra):
    argv = ["fit", "fusion", "--table", str(table), "--out", str(root / out), "--epochs", "1",
            "--device", "cpu", "--threads", "2", "--cache-dir", str(root / "cache"), "--quiet",
            "--whiten-dim", "16", *extra]
    assert main(argv) == 0
    return root / out


def test_fit_fusion_fits_text_on_training_days_and_stores_alpha(tables):
    root, a, b = tables
    run_a, run_b = fit(root, a, "run-a"), fit(root, b, "run-b")
    for name in ("whiten_mu", "whiten_W", "fallback_user_mean", "fallback_item_mean"):
        # different validation/test text, identical fitted text parameters
        np.testing.assert_array_equal(np.load(run_a / "text" / f"{name}.npy"),
                                      np.load(run_b / "text" / f"{name}.npy"))
    metrics = json.loads((run_a / "metrics.json").read_text())
    alpha = metrics["extras"]["test"]["alpha"]
    assert set(alpha["cold_item"]) == {"zero", "few", "warm"}
    assert set(alpha["per_scene"]) == {str(s) for s in range(5)}
    values = [alpha["mean"], *alpha["per_scene"].values(), *alpha["cold_user"].values(),
              *alpha["cold_item"].values()]
    # this table's text says nothing about clicks, so the content guard may keep the backbone alone
    on = metrics["content_guard"]["content_on"]
    assert all((0 < v < 1) if on else v == 0 for v in values if v is not None)
    config = json.loads((run_a / "config.json").read_text())
    assert config["spec"]["blocks"]["text_user"] <= 16 + 1


def test_evaluate_reloads_the_text_side(tables, capsys):
    root, a, _ = tables
    run = root / "run-a"
    if not run.exists():
        fit(root, a, "run-a")
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    again = json.loads(capsys.readouterr().out)
    saved = json.loads((run / "metrics.json").read_text())
    assert again["test"]["auc"] == pytest.approx(saved["test"]["auc"], abs=1e-9)
    assert again["extras"]["test"]["alpha"]["mean"] == pytest.approx(
        saved["extras"]["test"]["alpha"]["mean"], abs=1e-9)


def test_ladder_writes_mean_and_std_and_resumes(tables, capsys):
    root, a, _ = tables
    out = root / "ladder"
    argv = ["ladder", "--table", str(a), "--out", str(out), "--seeds", "2", "--rungs", "mmoe",
            "mmoe+tokens", "fusion", "--epochs", "1", "--device", "cpu", "--threads", "2",
            "--cache-dir", str(root / "cache"), "--quiet"]
    assert main(argv) == 0
    doc = json.loads((out / "ladder.json").read_text())
    assert list(doc["test_auc"]) == ["mmoe", "mmoe+tokens", "fusion"]
    for rung in doc["test_auc"]:
        aucs = [json.loads((out / "runs" / f"{rung}-seed{s}" / "metrics.json").read_text())["test"]["auc"]
                for s in (0, 1)]
        stat = doc["test_auc"][rung]["auc"]
        assert stat["mean"] == pytest.approx(np.mean(aucs))
        assert stat["std"] == pytest.approx(np.std(aucs, ddof=1))
        assert {"scene 0", "user zero", "item zero", "item warm"} <= set(doc["test_auc"][rung])
    table = (out / "ladder.md").read_text()
    assert "| fusion |" in table and "±" in table

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.json")}
    assert main(argv) == 0  # finished runs are read back, not trained again
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.json")} == stamps
