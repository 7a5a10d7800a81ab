"""The streaming reader and data-parallel training with torchrun (gloo, CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synthetic.sample_table import write_sample_table
from trainer.batches import shuffled_batches, training_shard
from trainer.cli import main
from trainer.table import Table, split_days

ROOT = Path(__file__).resolve().parents[1]


class RowIds:
    """A stand-in for Features that keeps each row's impression_id, so rows can be counted."""

    columns = ("impression_id", "label")

    def __call__(self, batch):
        return {"label": batch.column("label").to_numpy(),
                "row": np.asarray(batch.column("impression_id").to_pylist(), dtype=object)}


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    # several files per day, as the warehouse writes them, so shards have files to split
    return write_sample_table(tmp_path_factory.mktemp("dist") / "t", rows_per_day=3000, days=6, seed=4,
                              files_per_day=3)


def epoch_rows(t: Table, days, seed: int, epoch: int, buffer_rows: int, rank: int = 0, world: int = 1):
    shard = training_shard(t, days, seed, epoch, rank, world)
    return np.concatenate([b["row"] for b in shuffled_batches(t, shard, RowIds(), 256, buffer_rows, seed, epoch)])


def test_streaming_reader_yields_every_training_row_once_in_a_seeded_order(table):
    t = Table(table)
    days = split_days(t.days, 1, 1)["train_days"]
    every = np.concatenate([b.column("impression_id").to_numpy(zero_copy_only=False)
                            for b in t.batches(days, ["impression_id"])])
    first = epoch_rows(t, days, seed=3, epoch=0, buffer_rows=1000)  # buffer far smaller than the days
    assert len(first) == len(every) == len(set(first)) and set(first) == set(every)
    np.testing.assert_array_equal(first, epoch_rows(t, days, seed=3, epoch=0, buffer_rows=1000))
    assert not np.array_equal(first, epoch_rows(t, days, seed=3, epoch=1, buffer_rows=1000))
    assert not np.array_equal(first, epoch_rows(t, days, seed=4, epoch=0, buffer_rows=1000))
    # rows really move across files: the first batch mixes more than one file
    assert len({r for r in first[:256]} & set(every[:3000])) < 256


def test_a_day_read_in_part_gives_its_share_of_its_rows_once_each_and_a_new_draw_each_epoch(table):
    t = Table(table)
    days = split_days(t.days, 1, 1)["train_days"]
    shares = {days[0]: 0.25, days[1]: 0.0}
    by_day = {day: {r for b in t.batches([day], ["impression_id"]) for r in b.column("impression_id").to_pylist()}
              for day in days}

    def epoch(e):
        shard = training_shard(t, days, 3, e)
        got = np.concatenate([b["row"] for b in shuffled_batches(t, shard, RowIds(), 256, 1000, 3, e,
                                                                  day_shares=shares)])
        assert len(got) == len(set(got))
        return {day: set(got) & rows for day, rows in by_day.items()}

    first, second = epoch(0), epoch(1)
    assert 0.2 < len(first[days[0]]) / len(by_day[days[0]]) < 0.3
    assert not first[days[1]]
    for day in days[2:]:
        assert first[day] == by_day[day]
    assert first[days[0]] != second[days[0]]
    assert first == epoch(0)


def test_ranks_read_disjoint_shards_that_cover_the_training_days(table):
    t = Table(table)
    days = split_days(t.days, 1, 1)["train_days"]
    shards = [set(epoch_rows(t, days, 5, 0, 4096, rank, 2)) for rank in (0, 1)]
    assert not shards[0] & shards[1]
    assert len(shards[0] | shards[1]) == t.count_rows(t.fragments(days))


@pytest.mark.slow
def test_torchrun_two_processes_write_one_run_that_matches_a_single_process(tmp_path, capsys):
    # big enough that the order of the rows moves test AUC by less than the tolerance
    table = write_sample_table(tmp_path / "t", rows_per_day=8000, days=6, seed=4, files_per_day=4)
    runs = tmp_path / "runs"
    common = ["--table", str(table), "--epochs", "2", "--patience", "2", "--threads", "1", "--seed", "7",
              "--quiet"]
    single = runs / "single"
    assert main(["fit", "mmoe", "--out", str(single), "--batch-size", "1024", *common]) == 0
    ddp = runs / "ddp"
    # two ranks of 512 rows: the same effective batch as the single process
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "trainer",
                    "fit", "mmoe", "--out", str(ddp), "--batch-size", "512", *common],
                   cwd=ROOT, check=True, timeout=600, capture_output=True)
    assert sorted(p.name for p in runs.iterdir()) == ["ddp", "single"]  # one run, no leftovers
    for f in ("config.json", "model.safetensors", "metrics.json", "history.json", "scores_test.parquet"):
        assert (ddp / f).is_file(), f
    got = json.loads((ddp / "metrics.json").read_text())
    want = json.loads((single / "metrics.json").read_text())
    test_rows = Table(table).count_rows(Table(table).fragments(want["split"]["test_days"]))
    assert got["test"]["n"] == want["test"]["n"] == test_rows  # every test row counted once
    assert got["test"]["auc"] == pytest.approx(want["test"]["auc"], abs=0.005)
    # the gathered evaluation equals a single-process evaluation of the same weights
    capsys.readouterr()
    assert main(["evaluate", str(ddp)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test"]["auc"] == pytest.approx(got["test"]["auc"], abs=1e-12)
    assert again["val"]["gauc"] == pytest.approx(got["val"]["gauc"], abs=1e-12)
