"""fit --init-from: a daily refresh from an earlier run, on the days after it plus a replay window."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from synthetic.sample_table import write_sample_table
from trainer.cli import main

FIT = ["--epochs", "2", "--threads", "1", "--batch-size", "512", "--quiet"]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """The same table as of two days: five days, and the two that arrived after them."""
    root = tmp_path_factory.mktemp("refresh")
    full = write_sample_table(root / "full", rows_per_day=2000, days=7, seed=4)
    earlier = root / "earlier"
    earlier.mkdir()
    for day in sorted(full.glob("date=*"))[:5]:
        shutil.copytree(day, earlier / day.name)
    return earlier, full


@pytest.fixture(scope="module")
def parent(tables, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "parent"
    assert main(["fit", "mmoe", "--table", str(tables[0]), "--out", str(out), *FIT]) == 0
    return out


def config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_refresh_trains_on_new_days_and_a_replay_window_from_the_parents_state(tables, parent, tmp_path):
    out = tmp_path / "refreshed"
    assert main(["fit", "mmoe", "--table", str(tables[1]), "--out", str(out), "--init-from", str(parent),
                 "--replay-days", "1", *FIT]) == 0
    before, after = config(parent), config(out)
    assert before["split"]["train_days"] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert after["split"]["train_days"] == ["2024-03-03", "2024-03-04", "2024-03-05"]
    assert after["split"]["test_days"] == ["2024-03-07"]
    assert after["parent"] == str(parent.resolve())
    assert after["hparams"] == before["hparams"]
    # the vocabularies and preprocessing are the earlier run's, not refitted
    assert (out / "vocab_user_id.parquet").read_bytes() == (parent / "vocab_user_id.parquet").read_bytes()
    assert json.loads((out / "preprocessing.json").read_text()) == json.loads((parent / "preprocessing.json").read_text())
    m = metrics(out)
    assert m["split"]["rows"]["train"] == 6000
    assert m["test"]["auc"] > 0.6
    # and it is scored like any run
    assert main(["evaluate", str(out)]) == 0


def test_refresh_refuses_another_model_and_nothing_new(tables, parent, tmp_path, capsys):
    assert main(["fit", "dnn", "--table", str(tables[1]), "--out", str(tmp_path / "a"), "--init-from",
                 str(parent), *FIT]) == 1
    assert "is a mmoe run, not dnn" in capsys.readouterr().err
    assert main(["fit", "mmoe", "--table", str(tables[0]), "--out", str(tmp_path / "b"), "--init-from",
                 str(parent), *FIT]) == 1
    assert "nothing to refresh on" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
