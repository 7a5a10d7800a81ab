"""fit --init-from: a daily refresh from an earlier run, on the days after it plus a replay window."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from m2ctr.schema import ID_COLUMNS
from synthetic.sample_table import write_sample_table
from trainer.artifacts import RunDir
from trainer.batches import ordered_batches
from trainer.cli import main
from trainer.config import FitConfig
from trainer.loop import Optimizers, epoch_batches, masked_bce
from trainer.prepare import prepare
from trainer.preprocessing import Preprocessor
from trainer.scoring import load_run, score, split_output, to_model
from trainer.table import REQUIRED_COLUMNS, Table

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
    # the scalers are the earlier run's; the id tables grew (test_vocabularies_grow_...)
    assert json.loads((out / "preprocessing.json").read_text())["mean"] == \
        json.loads((parent / "preprocessing.json").read_text())["mean"]
    assert after["spec"]["id_cardinalities"] > before["spec"]["id_cardinalities"]
    m = metrics(out)
    # under auto the refresh keeps its parent's calibration method and Platt prior, and refits its maps
    assert m["val"]["calibration"]["method"] == metrics(parent)["val"]["calibration"]["method"]
    kept = json.loads((parent / "calibration.json").read_text())["choice"]
    refitted = json.loads((out / "calibration.json").read_text())["choice"]
    assert refitted.get("platt_prior") == kept.get("platt_prior")
    assert set(refitted) <= {"platt_prior"}  # nothing chosen again: no out-of-fold losses
    # the replayed day once, each of the two new days twice (--new-passes 2, the default)
    assert m["split"]["rows"]["train"] == 2000 + 2 * 2 * 2000
    assert m["test"]["auc"] > 0.6
    # and it is scored like any run
    assert main(["evaluate", str(out)]) == 0


def test_a_spread_replay_draws_the_rows_of_the_replay_days_from_every_earlier_day(tables, parent, tmp_path):
    out = tmp_path / "spread"
    assert main(["fit", "mmoe", "--table", str(tables[1]), "--out", str(out), "--init-from", str(parent),
                 "--replay-days", "1", "--replay", "spread", *FIT]) == 0
    assert config(out)["split"]["train_days"] == [f"2024-03-0{d}" for d in range(1, 6)]
    assert config(out)["config"]["replay"] == "spread"
    # the two new days twice, and a third of each of the three earlier ones
    assert metrics(out)["split"]["rows"]["train"] == 2 * 2000 * 2 + 3 * round(2000 / 3)


def test_an_epoch_of_a_refresh_reads_each_new_row_new_passes_times_and_each_replayed_row_once(tables, parent):
    cfg = FitConfig("mmoe", table=str(tables[1]), init_from=str(parent), threads=1, batch_size=512, quiet=True,
                    new_passes=3)
    p = prepare(cfg)
    assert p.day_shares == {"2024-03-04": 3, "2024-03-05": 3}
    seen = {}
    for batch in epoch_batches(p, cfg, 0):
        for row in zip(*(batch[k].reshape(len(batch["label"]), -1).tolist() for k in ("ids", "dense"))):
            key = str(row)
            seen[key] = seen.get(key, 0) + 1
    assert sum(seen.values()) == p.n_train_rows == 2000 + 3 * 2 * 2000
    # rows of the new days come three times, the replayed day's once (their ids and dense columns tell
    # the rows apart; a repeated impression would count more)
    assert sorted(set(seen.values())) == [1, 3]
    assert sum(n for n in seen.values() if n == 1) == 2000
    with pytest.raises(Exception, match="--new-passes must be 1 or more"):
        prepare(cfg.replace(new_passes=0))


def test_refresh_refuses_another_model_and_nothing_new(tables, parent, tmp_path, capsys):
    assert main(["fit", "dnn", "--table", str(tables[1]), "--out", str(tmp_path / "a"), "--init-from",
                 str(parent), *FIT]) == 1
    assert "is a mmoe run, not dnn" in capsys.readouterr().err
    assert main(["fit", "mmoe", "--table", str(tables[0]), "--out", str(tmp_path / "b"), "--init-from",
                 str(parent), *FIT]) == 1
    assert "nothing to refresh on" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_vocabularies_grow_to_a_full_fits_and_the_grown_model_scores_as_its_parent(tables, parent):
    """The refresh counts the new days' ids: its counts and vocabularies are those a fit on all its
    training days would have, each earlier id keeping its row; an id the vocabulary gained starts
    from the row it read before, so until it trains the grown model scores every row as the parent."""
    p = prepare(FitConfig(model="mmoe", table=str(tables[1]), init_from=str(parent), threads=1))
    earlier = load_run(parent)
    days = sorted({*earlier.cfg["split"]["train_days"], *p.split["train_days"]})
    full = Preprocessor.fit(p.table.batches(days, REQUIRED_COLUMNS))
    for f in ID_COLUMNS:
        old = list(earlier.prep.vocab[f])
        assert list(p.prep.vocab[f][: len(old)]) == old
        assert len(p.prep.vocab[f]) > len(old)
        assert set(p.prep.vocab[f]) == set(full.vocab[f])
        index, n = p.prep.counts[f]
        assert dict(zip(index, n)) == dict(zip(*full.counts[f]))
    test = p.split["test_days"]
    items = np.concatenate([b.column("item_id").to_numpy(zero_copy_only=False)
                            for b in p.table.batches(test, ["item_id"])])
    assert np.isin(items, list(p.prep.vocab["item_id"][len(earlier.prep.vocab["item_id"]):])).sum() > 100
    grown = score(p.start, ordered_batches(p.table, test, p.features), p.features, "cpu")
    before = score(earlier.model, ordered_batches(p.table, test, earlier.features), earlier.features, "cpu")
    assert len(grown["probability"]) == 2000
    np.testing.assert_allclose(grown["probability"], before["probability"], rtol=0, atol=1e-6)


def test_a_refresh_continues_the_parents_optimiser(tables, parent):
    """A run keeps its Adam moments; a refresh takes them up, each id row's following its row, so its
    first steps nudge the trained weights instead of moving each by about the learning rate."""
    kept = RunDir(parent).optimizer()
    earlier = load_run(parent)
    for name, weight in earlier.model.named_parameters():
        assert kept[f"{name}.exp_avg_sq"].shape == weight.shape, name
        assert kept[f"{name}.step"].item() > 0
    p = prepare(FitConfig(model="mmoe", table=str(tables[1]), init_from=str(parent), threads=1))
    rows_before = torch.from_numpy(p.prep.id_rows_before(earlier.prep))
    table = next(n for n, _ in p.start.named_parameters() if n.endswith("embedding.weight"))
    assert p.moments[f"{table}.exp_avg"].shape == dict(p.start.named_parameters())[table].shape
    assert len(rows_before) > kept[f"{table}.exp_avg"].shape[0]  # the table grew
    torch.testing.assert_close(p.moments[f"{table}.exp_avg"], kept[f"{table}.exp_avg"][rows_before])

    opt = Optimizers(p.start, 1e-3, 5e-4, 0.0)
    rates = [g["lr"] for o in opt.opts for g in o.param_groups]
    opt.load_moments(p.moments)
    assert [g["lr"] for o in opt.opts for g in o.param_groups] == rates  # the refresh's own rates
    for o in opt.opts:
        for group in o.param_groups:
            for param in group["params"]:
                name = opt.names[id(param)]
                torch.testing.assert_close(o.state[param]["exp_avg_sq"], p.moments[f"{name}.exp_avg_sq"])
    p.start.train()
    batch = to_model(next(iter(ordered_batches(p.table, p.split["train_days"][-1:], p.features))), p.features,
                     torch.device("cpu"))
    moved = {}
    for warm in (False, True):
        model = copy.deepcopy(p.start)
        opt = Optimizers(model, 1e-3, 5e-4, 0.0)
        if warm:
            opt.load_moments(p.moments)
        before = {n: w.detach().clone() for n, w in model.named_parameters()}
        logits, _ = split_output(model(batch))
        masked_bce(logits, batch["scene"], batch["label"]).backward()
        opt.step()
        moved[warm] = sum(float((w.detach() - before[n]).abs().sum()) for n, w in model.named_parameters())
    assert moved[True] < 0.5 * moved[False]


def test_a_refresh_keeps_its_share_of_the_parents_weights(tables, parent, tmp_path):
    """At the epoch's end the refreshed weights move back --keep-parent of the way to the parent's (its
    id tables grown): the same one-epoch refresh kept at 0.4 lies on the line from the plain fine-tune
    to them."""
    grown = prepare(FitConfig("mmoe", table=str(tables[1]), init_from=str(parent), threads=1)).start.state_dict()
    weights = {}
    for share in (0.0, 0.4):
        out = tmp_path / f"keep-{share}"
        assert main(["fit", "mmoe", "--table", str(tables[1]), "--out", str(out), "--init-from", str(parent),
                     "--keep-parent", str(share), *FIT, "--epochs", "1"]) == 0
        weights[share] = load_run(out).model.state_dict()
    moved = 0.0
    for name, value in weights[0.0].items():
        if value.is_floating_point():
            torch.testing.assert_close(weights[0.4][name], 0.6 * value + 0.4 * grown[name], rtol=1e-5, atol=1e-6)
            moved += float((value - grown[name]).abs().sum())
    assert moved > 1.0  # the fine-tune moved away from the parent: the line has a length
    with pytest.raises(Exception, match="--keep-parent must be at least 0 and below 1"):
        prepare(FitConfig("mmoe", table=str(tables[1]), init_from=str(parent), keep_parent=1.0))


@pytest.mark.slow
def test_a_refresh_of_a_run_whose_guard_turned_the_text_off_scores_it_again(tables, tmp_path):
    """A parent kept as its backbone alone trains its refresh without the content side; the refresh's
    guard scores the fused model too before it decides, and the run it writes scores its validation
    days as its scores file says. It encodes new texts through the cache it is given, not its parent's."""
    parent, out = tmp_path / "parent", tmp_path / "refreshed"
    text = ["--whiten-dim", "16"]
    assert main(["fit", "fusion", "--table", str(tables[0]), "--out", str(parent), *FIT, *text,
                 "--cache-dir", str(tmp_path / "parent-cache")]) == 0
    run = RunDir(parent)
    run.write_weights({**run.weights(), "content_on": torch.tensor(0.0)})
    assert main(["fit", "fusion", "--table", str(tables[1]), "--out", str(out), "--init-from", str(parent),
                 *FIT, "--cache-dir", str(tmp_path / "cache")]) == 0
    guard = metrics(out)["content_guard"]
    assert guard["fused_val_auc"] != guard["backbone_val_auc"]
    refreshed = load_run(out)
    assert float(refreshed.model.content_on) == float(guard["content_on"])
    table = Table(str(tables[1]), need_text=True)
    val = score(refreshed.model, ordered_batches(table, ["2024-03-06"], refreshed.features), refreshed.features,
                "cpu")
    written = pq.read_table(out / "scores_val.parquet").column("probability_raw").to_numpy()
    np.testing.assert_allclose(val["probability"], written, rtol=0, atol=1e-6)
    assert any((tmp_path / "cache").rglob("*"))
