"""Cold start as the model reads it: point-in-time cold signals, the new-id row, and the cold-start
simulation that touches training batches only."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import orc

from m2ctr.schema import HISTORY_FAMILIES, HISTORY_KEYS, ZERO
from synthetic.sample_table import write_sample_table
from trainer.batches import Features, ordered_batches
from trainer.cli import main
from trainer.coldstart import ColdStartSimulation
from trainer.preprocessing import NEW_ID, Preprocessor
from trainer.scoring import load_run, score
from trainer.table import REQUIRED_COLUMNS, Table, split_days

DAYS = 5


def features_of(path, new_ids=True):
    table = Table(path)
    split = split_days(table.days, 1, 1)
    prep = Preprocessor.fit(table.batches(split["train_days"], REQUIRED_COLUMNS), new_ids=new_ids)
    return table, split, Features(prep)


def concat(batches) -> dict[str, np.ndarray]:
    parts = list(batches)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """a: a sample table; b: the same with its last training day's rows shown four times over."""
    root = tmp_path_factory.mktemp("cold")
    a = write_sample_table(root / "a", rows_per_day=600, days=DAYS, seed=3)
    b = write_sample_table(root / "b", rows_per_day=600, days=DAYS, seed=3)
    last_train = sorted(b.glob("date=*"))[DAYS - 3]
    t = orc.read_table(str(last_train / "part-0.orc"))
    copies = [t.set_column(0, "impression_id", pa.array([f"{x}-copy{k}" for x in t.column(0).to_pylist()]))
              for k in range(3)]
    orc.write_table(pa.concat_tables([t, *copies]), str(last_train / "part-0.orc"))
    return a, b


def test_cold_signal_of_a_training_row_comes_from_days_before_it(tables):
    a, b = tables
    got = {}
    for name, path in (("a", a), ("b", b)):
        table, split, features = features_of(path)
        earlier = split["train_days"][:-1]  # every training day before the changed one
        got[name] = concat(ordered_batches(table, earlier, features))
    for key in HISTORY_KEYS.values():
        np.testing.assert_array_equal(got["a"][key], got["b"][key])
    # the new-id row follows the same signal
    np.testing.assert_array_equal(got["a"]["ids"] == NEW_ID, got["b"]["ids"] == NEW_ID)
    # the training-day buckets (evaluation only) do move: the check above can fail
    assert (got["a"]["cold_item"] != got["b"]["cold_item"]).any()
    # a training row on its item's first day is "zero", and reads the new-id row
    first_day = got["a"]["hist_item"] == ZERO
    assert first_day.any() and (got["a"]["cold_item"][first_day] != ZERO).all()
    assert (got["a"]["ids"][first_day, 1] == NEW_ID).all() and (got["a"]["ids"][~first_day, 1] != NEW_ID).all()


def test_without_new_ids_every_id_keeps_its_vocabulary_or_hash_row(tables):
    table, split, features = features_of(tables[0], new_ids=False)
    rows = concat(ordered_batches(table, split["train_days"], features))
    assert (rows["ids"] != NEW_ID).all() and (rows["hist_item"] == ZERO).any()


def test_simulation_makes_drawn_sides_new_and_leaves_its_input_alone(tables):
    table, split, features = features_of(tables[0])
    batch = concat(ordered_batches(table, split["train_days"], features))
    before = {k: v.copy() for k, v in batch.items()}
    prep = features.prep
    out = ColdStartSimulation(p_user=0.0, p_item=0.5, mask_history=True)(batch, prep, np.random.default_rng(0))
    for k, v in before.items():
        np.testing.assert_array_equal(batch[k], v)  # the input batch is not written to
    known = before["ids"][:, 1] != NEW_ID
    drawn = (out["ids"][:, 1] == NEW_ID) & known
    assert 0.4 < drawn[known].mean() < 0.6
    assert (out["hist_item"][drawn] == ZERO).all()
    np.testing.assert_array_equal(out["ids"][:, 0], before["ids"][:, 0])  # p_user 0: users untouched
    columns = prep.state["dense_columns"]
    empty = prep.no_history(out["scene"])
    for family in ("item", "pair"):
        cols = [columns.index(c) for c in HISTORY_FAMILIES[family][0]]
        np.testing.assert_allclose(out["dense"][np.ix_(drawn, cols)], empty[np.ix_(drawn, cols)])
    user_cols = [columns.index(c) for c in HISTORY_FAMILIES["user"][0]]
    np.testing.assert_array_equal(out["dense"][:, user_cols], before["dense"][:, user_cols])
    # the no-history values are those of real rows without history: a flag of 0, counts of 0
    flag = columns.index(HISTORY_FAMILIES["item"][1])
    real_new = before["hist_item"] == ZERO
    np.testing.assert_allclose(out["dense"][drawn, flag], before["dense"][real_new, flag][0])
    kept = ColdStartSimulation()(batch, prep, np.random.default_rng(0))
    assert kept is batch


def test_simulation_hides_the_history_of_a_share_of_its_rows(tables):
    """mask_history 0.5: about half the drawn rows look like an item's first day, the rest keep their
    history and cold signal under the new-id row, as an item first seen after the training days."""
    table, split, features = features_of(tables[0])
    batch = concat(ordered_batches(table, split["train_days"], features))
    warm = (batch["hist_item"] != ZERO) & (batch["ids"][:, 1] != NEW_ID)
    out = ColdStartSimulation(p_item=1.0, mask_history=0.5)(batch, features.prep, np.random.default_rng(0))
    assert (out["ids"][:, 1] == NEW_ID).all()
    hidden = out["hist_item"][warm] == ZERO
    assert 0.4 < hidden.mean() < 0.6
    np.testing.assert_array_equal(out["hist_item"][warm][~hidden], batch["hist_item"][warm][~hidden])


def test_simulation_never_touches_validation_test_or_predict_batches(tables, tmp_path):
    """Trained with every user and item made new, yet the saved validation and test scores and
    `predict` are those of the rows as they are, not as simulated."""
    path = tables[0]
    run_dir = tmp_path / "run"
    assert main(["fit", "mmoe", "--table", str(path), "--out", str(run_dir), "--epochs", "1", "--threads", "1",
                 "--batch-size", "256", "--quiet", "--tokens", "--token-min-count", "1",
                 "--cold-user", "1", "--cold-item", "1", "--cold-mask-history", "on"]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["cold_start_simulation"] == {"p_user": 1.0, "p_item": 1.0, "mask_history": True}
    run = load_run(run_dir)
    table = Table(path, need_text=True)
    sim = ColdStartSimulation(1.0, 1.0, True)
    for part in ("val", "test"):
        days = config["split"][f"{part}_days"]
        plain = score(run.model, ordered_batches(table, days, run.features), run.features, run.device)
        simulated = score(run.model, (sim(b, run.prep, np.random.default_rng(0))
                                      for b in ordered_batches(table, days, run.features)),
                          run.features, run.device)
        saved = pq.read_table(run_dir / f"scores_{part}.parquet").column("probability").to_numpy()
        np.testing.assert_allclose(saved, plain["probability"], rtol=1e-6)
        assert np.abs(saved - simulated["probability"]).max() > 1e-4  # the check can fail
    out = tmp_path / "preds.parquet"
    assert main(["predict", str(run_dir), "--table", str(path), "--out", str(out)]) == 0
    preds = pq.read_table(out).column("probability").to_numpy()
    everything = score(run.model, ordered_batches(table, table.days, run.features), run.features, run.device)
    np.testing.assert_allclose(preds, everything["probability"], rtol=1e-6)


def test_bad_simulation_options_are_clear_errors(tables, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "mmoe", "--table", str(tables[0]), "--cold-item", "1.5"])
    assert e.value.code == 2 and "must be in [0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["fit", "mmoe", "--table", str(tables[0]), "--cold-mask-history", "sometimes"])
    assert e.value.code == 2 and "--cold-mask-history" in capsys.readouterr().err
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        ColdStartSimulation(p_user=-0.1)



@pytest.mark.slow
def test_simulation_lets_fusion_score_new_items_from_their_text(tmp_path):
    """Clicks depend on the item's topic and on the user's topic matching it, which only the text
    shows for an item without history. New users and items arrive from the validation day on, so
    the only training rows without history are the first day's, where every user is new as well:
    a known user meeting a new item, every third test row, is never seen in training. With the
    cold-start simulation fusion learns to score such rows from their text, and beats itself
    without it."""
    table = write_sample_table(tmp_path / "training_samples", rows_per_day=2500, days=8, seed=2,
                               arrivals_from=6, topic_effect=2.5, topic_affinity=2.0)
    aucs = {}
    for name, p in (("without", "0"), ("with", "0.5")):
        out = tmp_path / name
        assert main(["fit", "fusion", "--table", str(table), "--out", str(out), "--epochs", "3", "--threads", "1",
                     "--batch-size", "512", "--seed", "0", "--quiet", "--whiten-dim", "16",
                     "--cache-dir", str(tmp_path / "cache"), "--cold-user", "0", "--cold-item", p,
                     "--cold-mask-history", "on"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        aucs[name] = metrics["test"]["cold_start"]["item"]["zero"]["auc"]
    assert aucs["with"] > aucs["without"] + 0.01, aucs


@pytest.mark.slow
def test_content_guard_keeps_the_backbone_when_the_text_stops_helping(tmp_path):
    """Text that helped on every training day and says nothing on the validation day: the guard
    turns fusion's content side off, the saved run keeps it off, and its validation AUC is its
    backbone's. Where the text keeps helping, the content side stays on."""
    decisions = {}
    for name, topic_days in (("stops", 6), ("stays", None)):
        table = write_sample_table(tmp_path / name / "training_samples", rows_per_day=3000, days=8, seed=3,
                                   topic_effect=2.5, topic_affinity=2.0, topic_days=topic_days)
        out = tmp_path / name / "fusion"
        assert main(["fit", "fusion", "--table", str(table), "--out", str(out), "--epochs", "2",
                     "--threads", "1", "--seed", "0", "--quiet"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        decisions[name] = guard = metrics["content_guard"]
        kept = guard["backbone_val_auc"] if not guard["content_on"] else guard["fused_val_auc"]
        assert metrics["val"]["auc"] == pytest.approx(kept, abs=0.02)  # calibration moves it a little
        assert float(load_run(out).model.content_on) == float(guard["content_on"])
    assert not decisions["stops"]["content_on"]
    assert decisions["stops"]["backbone_val_auc"] > decisions["stops"]["fused_val_auc"]
    assert decisions["stays"]["content_on"]
