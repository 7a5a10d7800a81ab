"""LightGBM peers and the oracle (trainer/peers.py) on a small generated training_samples table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from pyarrow import orc
from sklearn.metrics import roc_auc_score

from embeddings.text import item_texts, user_texts
from m2ctr.schema import DENSE_COLUMNS, TEXT_COLUMNS
from synthetic.sample_table import make_samples, write_sample_table
from trainer import metrics as M
from trainer.artifacts import RunDir
from trainer.peers import find_truth, fit_lightgbm, fit_preprocessor, oracle_metrics, read_part
from trainer.preprocessing import Preprocessor
from trainer.table import REQUIRED_COLUMNS, Table, TrainerError, split_days

SAMPLE = {"rows_per_day": 2000, "days": 6, "seed": 3}


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_sample_table(tmp_path_factory.mktemp("peers") / "training_samples", **SAMPLE)


@pytest.fixture(scope="module")
def split(table) -> dict:
    return split_days(Table(table).days, 1, 1)


@pytest.fixture(scope="module")
def truth(table, tmp_path_factory) -> Path:
    """truth.parquet as the generator writes it: join keys, label, date and the true probability."""
    tables, p = make_samples(**SAMPLE)
    t = pa.concat_tables(tables)
    ts = t.column("log_ts").cast(pa.timestamp("ms"))
    frame = pd.DataFrame(
        {
            "user_id": t.column("user_id").to_pylist(),
            "item_id": t.column("item_id").to_pylist(),
            "log_ts": ts.to_pandas(),
            "scene": t.column("scene").to_numpy(),
            "label": t.column("label").to_numpy(),
            "p_click": p,
        }
    )
    frame["date"] = frame["log_ts"].dt.date
    assert not frame.duplicated(["user_id", "item_id", "log_ts"]).any()
    path = tmp_path_factory.mktemp("raw") / "truth.parquet"
    frame.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def plain(table, split) -> dict:
    return fit_lightgbm(table, split, seed=0, threads=1)


def scene_only_auc(table: Path, split: dict) -> float:
    t = ds.dataset(str(table), format="orc", partitioning="hive").to_table(
        columns=["scene", "label", "date"]
    )
    date = np.array(t.column("date").cast(pa.string()).to_pylist())
    scene, label = t.column("scene").to_numpy(), t.column("label").to_numpy()
    train, test = np.isin(date, split["train_days"]), np.isin(date, split["test_days"])
    rate = {s: label[train & (scene == s)].mean() for s in np.unique(scene)}
    return roc_auc_score(label[test], [rate[s] for s in scene[test]])


def test_lightgbm_beats_a_scene_only_score(plain, table, split):
    assert plain["model"] == "lightgbm"
    assert plain["split"] == split
    assert set(plain["test"]) >= {"n", "auc", "logloss", "gauc", "per_scene_auc", "cold_start"}
    assert plain["test"]["auc"] > scene_only_auc(table, split) + 0.03


def test_run_directory_is_written_whole_and_read_back(table, split, tmp_path):
    out = tmp_path / "lightgbm-seed0"
    first = fit_lightgbm(table, split, seed=0, threads=1, out_dir=out)
    assert {p.name for p in out.iterdir()} >= {
        "metrics.json",
        "model.txt",
        "config.json",
        "cold_start.md",
        "calibration.json",
    }
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no staging sibling left behind
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(first))
    config = json.loads((out / "config.json").read_text())
    assert 0 < config["best_iteration"] <= config["max_rounds"]
    # served as a neural run is: through a per-scene calibration fitted on the validation days
    calibration = first["test"]["calibration"]
    assert calibration["method"] in ("platt", "isotonic") and {"before", "after"} <= set(calibration)
    assert calibration["after"]["logloss"] != calibration["before"]["logloss"]
    # the one config.json schema of every run: the options under "config", the warehouse recorded
    options = RunDir(out).options()
    assert (options["seed"], options["model"], options["text"]) == (0, "lightgbm", False)
    assert config["warehouse"]["table"] == str(table.resolve())
    stamp = (out / "model.txt").stat().st_mtime_ns
    again = fit_lightgbm(
        table, split, seed=0, threads=1, out_dir=out
    )  # a finished run is not retrained
    assert again == json.loads(json.dumps(first))
    assert (out / "model.txt").stat().st_mtime_ns == stamp


def _with_other_text(src: Path, dst: Path, days: list[str]) -> Path:
    """A copy of the table whose text on `days` is words the training days never use."""
    shutil.copytree(src, dst)
    for day in days:
        for f in (dst / f"date={day}").glob("*.orc"):
            t = orc.read_table(f)
            for c in TEXT_COLUMNS:
                words = [f"zebra{k % 7},quokka{k % 5}" for k in range(t.num_rows)]
                t = t.set_column(t.schema.get_field_index(c), c, pa.array(words))
            orc.write_table(t, str(f))
    return dst


def _fitted_text(run: Path) -> dict:
    out = {}
    for side in ("user", "item"):
        out[side] = json.loads((run / f"text_svd_{side}.json").read_text())["words"]
        arrays = np.load(run / f"text_svd_{side}.npz")
        out[f"{side} arrays"] = {k: arrays[k] for k in arrays.files}
    return out


def test_text_components_are_fitted_on_training_days_only(table, split, tmp_path):
    other = _with_other_text(table, tmp_path / "other", [*split["val_days"], *split["test_days"]])
    runs = {}
    for name, t in (("same", table), ("other", other)):
        runs[name] = tmp_path / name / "run"
        fit_lightgbm(t, split, seed=0, text=True, threads=1, out_dir=runs[name])
    a, b = _fitted_text(runs["same"]), _fitted_text(runs["other"])
    assert a["user"] and a["item"] and not any("zebra" in w for w in b["user"] + b["item"])
    for side in ("user", "item"):
        assert a[side] == b[side]
        for k, v in a[f"{side} arrays"].items():
            np.testing.assert_array_equal(v, b[f"{side} arrays"][k])
    config = json.loads((runs["same"] / "config.json").read_text())
    assert config["model"] == "lightgbm+text"
    assert len(config["features"]) == len(DENSE_COLUMNS) + 1 + 2 * 32  # dense, scene, 32 per side


def test_the_peer_reads_the_neural_runs_rows_and_the_featurizers_side_text(table, split):
    """One preprocessing and one side-text builder for every model: the peer's rows are
    Preprocessor.transform's, its texts embeddings.text's."""
    t = Table(table, need_text=True)
    prep = fit_preprocessor(t, split)
    days = split["test_days"]
    part = read_part(t, days, prep, text=True)
    batches = list(t.batches(days, [*REQUIRED_COLUMNS, *TEXT_COLUMNS]))
    want = [prep.transform(b) for b in batches]
    for k, v in part.arrays.items():
        np.testing.assert_array_equal(v, np.concatenate([w[k] for w in want]))
    for side, texts in (("user", user_texts), ("item", item_texts)):
        unique, codes = part.text[side]
        assert [unique.texts[c] for c in codes] == [x for b in batches for x in texts(b)]
        assert len(unique.texts) == len(set(unique.texts))


def _expected_oracle(table: Path, split: dict, truth: Path, part: str) -> dict:
    """trainer.metrics.evaluate on the neural runs' own arrays and the truth joined with pandas."""
    t = Table(table)
    prep = Preprocessor.fit(t.batches(split["train_days"], REQUIRED_COLUMNS))
    batches = list(t.batches(split[f"{part}_days"], [*REQUIRED_COLUMNS, "log_ts"]))
    arrays = [prep.transform(b) for b in batches]
    arrays = {k: np.concatenate([a[k] for a in arrays]) for k in arrays[0]}
    rows = pa.Table.from_batches(batches).select(["user_id", "item_id", "log_ts"]).to_pandas()
    rows["log_ts"] = rows["log_ts"].astype("datetime64[ms]")
    p = rows.merge(pd.read_parquet(truth), on=["user_id", "item_id", "log_ts"], how="left")[
        "p_click"
    ]
    assert len(p) == len(rows) and not p.isna().any()
    return M.evaluate(arrays, p.to_numpy(), prep.scenes)


def test_oracle_equals_evaluate_on_the_true_probability(table, split, truth, plain):
    got = oracle_metrics(table, split, truth)
    assert got["model"] == "oracle" and got["split"] == split
    for part in ("val", "test"):
        assert got[part] == _expected_oracle(table, split, truth, part)
    assert got["test"]["auc"] > plain["test"]["auc"]  # the ceiling is above a fitted model


@pytest.mark.parametrize(
    "defect", ["missing row", "duplicate row", "moved time", "other label", "extra row"]
)
def test_truth_that_does_not_match_the_rows_is_an_error(table, split, truth, tmp_path, defect):
    frame = pd.read_parquet(truth)
    test_rows = frame.index[frame["date"].astype(str) == split["test_days"][0]]
    k = test_rows[10]
    if defect == "missing row":
        frame = frame.drop(index=k)
    elif defect == "duplicate row":
        frame = pd.concat([frame, frame.loc[[k]]])
    elif defect == "moved time":
        frame.loc[k, "log_ts"] += pd.Timedelta(milliseconds=1)
    elif defect == "other label":
        frame.loc[k, "label"] = 1 - frame.loc[k, "label"]
    else:
        extra = frame.loc[[k]].assign(user_id="u-not-in-table")
        frame = pd.concat([frame, extra])
    bad = tmp_path / "truth.parquet"
    frame.to_parquet(bad, index=False)
    with pytest.raises(TrainerError, match="does not match the table"):
        oracle_metrics(table, split, bad)


def test_find_truth(tmp_path, monkeypatch):
    table = tmp_path / "data" / "warehouse" / "m2ctr.db" / "training_samples"
    table.mkdir(parents=True)
    monkeypatch.delenv("CTR_RAW_PATH", raising=False)
    assert find_truth(table) is None
    beside = tmp_path / "data" / "raw" / "truth.parquet"
    beside.parent.mkdir()
    beside.write_bytes(b"")
    assert find_truth(table) == beside  # the local layout: data/raw beside data/warehouse
    raw = tmp_path / "elsewhere"
    raw.mkdir()
    (raw / "truth.parquet").write_bytes(b"")
    monkeypatch.setenv("CTR_RAW_PATH", str(raw))
    assert find_truth(table) == raw / "truth.parquet"  # CTR_RAW_PATH comes first
    assert find_truth(table, beside) == beside  # an explicit path wins
    with pytest.raises(TrainerError, match="not found"):
        find_truth(table, tmp_path / "nope.parquet")
