"""Calibration in metrics.json and `trainer.report.write_report` on real small runs and a real ladder.

The pages are parsed back with the standard library's HTML parser: every number in their tables must
equal metrics.json (ladder.json) as the page formats it, and every image it names must exist beside
it, be non-empty and be the very PNG embedded in the page.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from m2ctr.schema import COLD_BUCKETS, cold_bucket
from synthetic.sample_table import make_samples, write_sample_table
from trainer import metrics as M
from trainer.artifacts import Directory, RunDir, warehouse_record
from trainer.cli import main
from trainer.figures import roc_curve
from trainer.models import MODELS
from trainer.report import write_report
from trainer.table import TrainerError

TABLE = {"rows_per_day": 300, "days": 4, "seed": 0}
FIT = ["--epochs", "2", "--threads", "1", "--device", "cpu", "--batch-size", "256", "--quiet"]
TEXT = ["--whiten-dim", "16"]


# ---------------------------------------------------------------------------- calibration


def test_ece_against_a_hand_computation():
    p = np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.4])
    y = np.array([1, 0, 0, 0, 1, 1, 0])
    # sorted by p: 0.1 0.2 0.3 | 0.4 0.7 | 0.8 0.9 (7 rows in 3 equal-mass bins: 3, 2, 2)
    # bin 1: mean p 0.2,  rate 1/3 -> |.| 2/15, bin 2: 0.55 vs 0.5 -> 0.05, bin 3: 0.85 vs 0.5 -> 0.35
    n, mean_p, rate = M.calibration_bins(y, p, bins=3)
    assert n.tolist() == [3, 2, 2]
    np.testing.assert_allclose(mean_p, [0.2, 0.55, 0.85])
    np.testing.assert_allclose(rate, [1 / 3, 0.5, 0.5])
    assert M.ece(y, p, bins=3) == pytest.approx((3 * 2 / 15 + 2 * 0.05 + 2 * 0.35) / 7)
    assert M.ece(y, p, bins=1) == pytest.approx(abs(p.mean() - y.mean()))
    # one row per bin: the mean absolute error of the probabilities
    assert M.ece(y, p, bins=100) == pytest.approx(np.mean(np.abs(p - y)))
    assert M.ece(np.array([]), np.array([])) is None


def test_ece_is_zero_when_every_bin_is_calibrated():
    p = np.repeat([0.1, 0.5], 10)
    y = np.r_[np.eye(10)[0], np.tile([0, 1], 5)]  # 1 click in 10 at 0.1, 5 in 10 at 0.5
    assert M.ece(y, p, bins=2) == pytest.approx(0.0, abs=1e-15)
    assert M.ece(1 - y, p, bins=2) > 0.3


def test_evaluate_carries_calibration_overall_and_per_scene():
    rng = np.random.default_rng(5)
    n = 500
    split = {
        "label": (rng.random(n) < 0.2).astype(np.float32),
        "scene": rng.integers(0, 2, n),
        "cold_user": rng.integers(0, 3, n),
        "cold_item": rng.integers(0, 3, n),
        "user_id": rng.integers(0, 40, n).astype(str).astype(object),
    }
    split["user_key"] = split["user_id"]
    p = rng.random(n) * 0.4
    out = M.evaluate(split, p, scenes=[2, 9])
    assert {"n", "auc", "logloss", "gauc", "per_scene_auc", "cold_start"} <= set(out)
    cal = out["calibration"]
    assert cal["ece_bins"] == M.ECE_BINS
    assert cal["ece"] == pytest.approx(M.ece(split["label"], p))
    assert cal["mean_predicted"] == pytest.approx(p.mean())
    assert cal["observed_rate"] == pytest.approx(split["label"].mean())
    for idx, scene in enumerate(("2", "9")):
        m = split["scene"] == idx
        c = cal["per_scene"][scene]
        assert c["n"] == int(m.sum())
        assert c["ece"] == pytest.approx(M.ece(split["label"][m], p[m]))
        assert c["observed_rate"] == pytest.approx(split["label"][m].mean())
    json.dumps(out)  # plain JSON types only


def test_roc_curve_area_is_the_auc():
    rng = np.random.default_rng(2)
    y = (rng.random(400) < 0.3).astype(float)
    p = np.round(rng.random(400) * 0.5 + 0.3 * y, 2)  # with ties
    fpr, tpr = roc_curve(y, p)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(M.auc(y, p), abs=1e-12)
    assert roc_curve(np.ones(5), rng.random(5)) is None


# ---------------------------------------------------------------------------- parsing a page


class Page(HTMLParser):
    """Tables by id (rows of cell texts, with each row's class), images, links and notes of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.row_classes: dict[str, list[str]] = {}
        self.images: list[dict] = []
        self.links: dict[str, str] = {}
        self.notes: list[str] = []
        self._table = self._cell = self._note = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table], self.row_classes[self._table] = [], []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
            self.row_classes[self._table].append(a.get("class", ""))
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "img":
            self.images.append(a)
        elif tag == "a":
            self.links[a.get("id") or a["href"]] = a["href"]
        elif tag == "p" and a.get("class") == "note":
            self._note = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "p" and self._note is not None:
            self.notes.append("".join(self._note))
            self._note = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._note is not None:
            self._note.append(data)

    def rows(self, table_id: str) -> list[dict[str, str]]:
        header, *body = self.tables[table_id]
        return [dict(zip(header, row, strict=True)) for row in body]


def render(directory: Path) -> Page:
    out = write_report(directory)
    assert out == directory / Directory.REPORT
    page = Page(out.read_text(encoding="utf-8"))
    for img in page.images:  # every image: embedded, and the same PNG beside the page
        file = directory / img["data-file"]
        assert file.is_file() and file.stat().st_size > 0, file
        data = file.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert base64.b64decode(img["src"].removeprefix("data:image/png;base64,")) == data
    # self-contained: no script and no remote address (the embedded PNGs' base64 is left out of the
    # search: "http" can be four characters of it)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]*", "", out.read_text())
    assert "<script" not in text and "http" not in text
    return page


def images(page: Page) -> set[str]:
    return {img["data-file"] for img in page.images}


# ---------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_sample_table(tmp_path_factory.mktemp("report") / "training_samples", **TABLE)


def write_scores_if_missing(run: Path, table: Path) -> None:
    """Stand-in for the trainer's own scores files until `fit` writes them: `predict` joined with the
    table's labels and scenes, and cold buckets counted on the run's training days as the trainer does.
    It cannot know fusion's alpha, so these files have none."""
    parts = [p for p in ("val", "test") if not (run / f"scores_{p}.parquet").is_file()]
    if not parts:
        return
    preds = run.parent / f"{run.name}-predictions.parquet"
    assert main(["predict", str(run), "--table", str(table), "--out", str(preds)]) == 0
    cols = ["impression_id", "user_id", "item_id", "scene", "label", "date"]
    rows = ds.dataset(str(table), format="orc", partitioning="hive").to_table(columns=cols).to_pandas()
    rows["date"] = rows["date"].astype(str)
    rows = rows.merge(pq.read_table(preds).to_pandas(), on="impression_id", validate="1:1")
    split = json.loads((run / "metrics.json").read_text())["split"]
    train = rows[rows["date"].isin(split["train_days"])]
    for part in parts:
        s = rows[rows["date"].isin(split[f"{part}_days"])]
        cold = {side: cold_bucket(s[key].map(train[key].value_counts()).fillna(0).to_numpy())
                for side, key in (("cold_user", "user_id"), ("cold_item", "item_id"))}
        pq.write_table(pa.table({
            "label": s["label"].to_numpy(np.float64), "probability": s["probability"].to_numpy(np.float64),
            "scene": s["scene"].to_numpy(np.int64), **cold,
        }), run / f"scores_{part}.parquet")


@pytest.fixture(scope="module")
def runs(table, tmp_path_factory) -> dict[str, Path]:
    """Lazily fitted runs by model name (each at most once per module)."""
    root = tmp_path_factory.mktemp("runs")
    done: dict[str, Path] = {}

    def get(model: str) -> Path:
        if model not in done:
            extra = [*TEXT, "--cache-dir", str(root / "cache")] if model == "fusion" else []
            assert main(["fit", model, "--table", str(table), "--out", str(root / model), *FIT, *extra]) == 0
            write_scores_if_missing(root / model, table)
            done[model] = root / model
        return done[model]

    return get


def check_run_tables(page: Page, run: Path) -> None:
    """Every number in the run page's tables is metrics.json's (history.json's), as formatted."""
    m = json.loads((run / "metrics.json").read_text())
    headline = {r["split"]: r for r in page.rows("headline")}
    assert set(headline) == {"validation", "test"}
    for part, title in (("val", "validation"), ("test", "test")):
        row, block, cal = headline[title], m[part], m[part]["calibration"]
        assert int(row["n"].replace(",", "")) == block["n"]
        assert row["AUC"] == M.fmt(block["auc"]) and row["GAUC"] == M.fmt(block["gauc"])
        assert row["logloss"] == M.fmt(block["logloss"]) and row["ECE"] == M.fmt(cal["ece"])
        assert row["mean predicted"] == M.fmt(cal["mean_predicted"])
        assert row["observed rate"] == M.fmt(cal["observed_rate"])
        scenes = [r for r in page.rows("per-scene") if r["split"] == title]
        assert [r["scene"] for r in scenes] == list(block["per_scene_auc"])
        for r in scenes:
            c = cal["per_scene"][r["scene"]]
            assert r["AUC"] == M.fmt(block["per_scene_auc"][r["scene"]])
            assert int(r["n"].replace(",", "")) == c["n"] and r["ECE"] == M.fmt(c["ece"])
            assert r["observed rate"] == M.fmt(c["observed_rate"])
        for r in page.rows("cold-start"):
            cell = block["cold_start"][r["side"]][r["bucket"]]
            assert int(r[f"{title} n"].replace(",", "")) == cell["n"]
            assert r[f"{title} AUC"] == M.fmt(cell["auc"])
    assert len(page.rows("cold-start")) == 2 * len(COLD_BUCKETS)
    split = {r["part"]: r for r in page.rows("split")}
    for part, title in (("train", "train"), ("val", "validation"), ("test", "test")):
        assert split[title]["days"] == ", ".join(m["split"][f"{part}_days"])
    assert int(split["test"]["rows"].replace(",", "")) == m["test"]["n"]
    prep = json.loads((run / "preprocessing.json").read_text())
    if "n_train_rows" in prep:  # the trainer records the training rows there
        assert int(split["train"]["rows"].replace(",", "")) == prep["n_train_rows"]
    history = json.loads((run / "history.json").read_text())
    rows = page.rows("history")
    assert [int(r["epoch"]) for r in rows] == [h["epoch"] for h in history]
    assert [r["train loss"] for r in rows] == [M.fmt(h["train_loss"]) for h in history]
    assert [r["validation AUC"] for r in rows] == [M.fmt(h["val_auc"]) for h in history]


SLICE_KEYS = {"user": "cold_user", "item": "cold_item", "scene": "per_scene"}
RUN_IMAGES = {"report_roc.png", "report_reliability.png", "report_cold_start.png", "report_history.png"}


def header(page: Page) -> dict[str, str]:
    return {r["field"]: r["value"] for r in page.rows("run")}


@pytest.mark.parametrize("model", [name for name, model in MODELS.items() if not model.uses_text])
def test_run_page(runs, table, model):
    run = runs(model)
    page = render(run)
    check_run_tables(page, run)
    head = header(page)
    assert (head["model"], head["seed"], head["max epochs"]) == (model, "42", "2")
    assert head["content"] == "none" and head["table"] == str(table.resolve())
    assert any("is not in a warehouse" in n for n in page.notes)
    assert images(page) == RUN_IMAGES
    assert "alpha" not in page.tables
    assert not [n for n in page.notes if "may not belong" in n], page.notes
    m = json.loads((run / "metrics.json").read_text())
    rows = {(r["split"], r["scene"]): r for r in page.rows("calibration")}
    assert len(rows) == 2 * (1 + len(m["test"]["per_scene_auc"]))
    for when in ("before", "after"):
        assert rows[("test", "all")][f"NE {when}"] == M.fmt(m["test"]["calibration"][when]["ne"])
        assert rows[("test", "0")][f"ECE {when}"] == M.fmt(m["test"]["calibration"][when]["per_scene"]["0"]["ece"])


@pytest.mark.slow  # the text encoder and whitening: ~20 s more than the other models
def test_fusion_run_page_shows_alpha(runs, tmp_path):
    run = runs("fusion")
    page = render(run)
    check_run_tables(page, run)
    content = header(page)["content"]
    assert content.startswith("tokens, topics, text vectors, fallback vectors (") and "whiten_dim 16" in content
    alpha = json.loads((run / "metrics.json").read_text())["extras"]
    rows = page.rows("alpha")
    assert len(rows) == 1 + 2 * len(COLD_BUCKETS) + len(alpha["test"]["alpha"]["per_scene"])
    for r in rows:
        kind, _, key = r["slice"].partition(" ")
        for part, title in (("val", "validation"), ("test", "test")):
            a = alpha[part]["alpha"]
            want = a["mean"] if kind == "all" else a[SLICE_KEYS[kind]][key]
            assert r[f"{title} mean alpha"] == M.fmt(want)
    scores = pq.read_table(run / "scores_test.parquet")
    if "alpha" in scores.column_names:  # the trainer's own scores files carry each row's alpha
        assert images(page) == RUN_IMAGES | {"report_alpha.png"}
    else:
        assert images(page) == RUN_IMAGES
        assert any("no alpha column" in n for n in page.notes)
    # with a per-row alpha column the distributions are drawn
    copy = tmp_path / "fusion"
    shutil.copytree(run, copy)
    if "alpha" not in scores.column_names:
        gate = np.random.default_rng(0).uniform(0.2, 0.8, scores.num_rows)  # values only shape the plot
        pq.write_table(scores.append_column("alpha", pa.array(gate)), copy / "scores_test.parquet")
    assert images(render(copy)) == RUN_IMAGES | {"report_alpha.png"}


def test_an_old_run_without_optional_pieces_renders_and_says_what_is_missing(runs, tmp_path):
    old = tmp_path / "old-run"
    shutil.copytree(runs("dnn"), old)
    for f in ("scores_val.parquet", "scores_test.parquet", "history.json", "report.html"):
        (old / f).unlink(missing_ok=True)
    m = json.loads((old / "metrics.json").read_text())
    for part in ("val", "test"):
        del m[part]["calibration"]  # metrics.json from before calibration
    (old / "metrics.json").write_text(json.dumps(m))
    page = render(old)
    assert images(page) == {"report_cold_start.png"}
    assert {r["ECE"] for r in page.rows("headline")} == {"-"}
    assert [r["AUC"] for r in page.rows("headline")] == [M.fmt(m["val"]["auc"]), M.fmt(m["test"]["auc"])]
    notes = " ".join(page.notes)
    assert "scores_test.parquet is not in this run" in notes and "history.json is not in this run" in notes
    assert "predates per-scene calibration" in notes


def test_stale_scores_are_flagged(runs, tmp_path):
    run = tmp_path / "stale"
    shutil.copytree(runs("dnn"), run)
    (run / "scores_val.parquet").unlink()
    t = pq.read_table(run / "scores_test.parquet")
    flipped = pa.array(1 - t.column("probability").to_numpy())
    pq.write_table(t.set_column(t.schema.get_field_index("probability"), "probability", flipped),
                   run / "scores_test.parquet")
    assert any("scores_test.parquet gives AUC" in n for n in render(run).notes)


def _data_quality_result(schema_dir: Path, docs: Path, success: bool) -> None:
    """What `python -m expectations validate` leaves beside the tables (expectations/report.py)."""
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text("<html>docs</html>")
    (schema_dir / "_data_quality.json").write_text(json.dumps({
        "created_at": "2026-01-02T03:04:05+00:00", "success": success,
        "suites": {"raw": True, "training_samples": success}, "data_docs": str(docs)}))


def test_a_run_records_its_warehouse_and_links_its_data_quality(runs, tmp_path):
    schema_dir = tmp_path / "warehouse" / "m2ctr.db"
    table = schema_dir / "training_samples"
    table.mkdir(parents=True)
    assert warehouse_record(table) == {"table": str(table.resolve()), "schema_dir": str(schema_dir.resolve()),
                                       "data_quality": None}
    docs = tmp_path / "reports" / "data_docs" / "index.html"
    _data_quality_result(schema_dir, docs, success=False)
    record = warehouse_record(table)
    assert record["data_quality"]["success"] is False and record["data_quality"]["data_docs"] == str(docs)

    run = tmp_path / "runs" / "dnn"
    shutil.copytree(runs("dnn"), run)
    config = json.loads((run / "config.json").read_text())
    assert config["warehouse"]["data_quality"] is None  # the fixture's table is outside a warehouse
    config["warehouse"] = record
    (run / "config.json").write_text(json.dumps(config))
    page = render(run)
    assert (run / page.links["data-docs"]).resolve() == docs.resolve()
    text = (run / Directory.REPORT).read_text()
    assert "FAILED (training_samples), validated 2026-01-02T03:04:05+00:00" in text

    # validated before the run, then the docs removed: the page says so instead of a dead link
    docs.unlink()
    assert "data-docs" not in render(run).links
    assert "are no longer there" in (run / Directory.REPORT).read_text()

    config["warehouse"] = {**record, "data_quality": None}
    (run / "config.json").write_text(json.dumps(config))
    assert any("No data-quality result for the warehouse this run read" in n for n in render(run).notes)


def test_runs_of_the_last_release_still_load_and_show_their_options(runs, tmp_path):
    """config.json before it was numbered: a neural run without a warehouse record, a peer's with
    its seed at the top level."""
    run = tmp_path / "old"
    shutil.copytree(runs("dnn"), run)
    config = json.loads((run / "config.json").read_text())
    del config["format"], config["warehouse"]
    (run / "config.json").write_text(json.dumps(config))
    assert RunDir(run).options()["epochs"] == 2
    page = render(run)
    assert header(page)["seed"] == "42" and any("did not record the warehouse" in n for n in page.notes)

    peer = {"model": "lightgbm+text", "table": "/somewhere/training_samples", "seed": 3, "threads": 1,
            "split": config["split"], "params": {}}
    (run / "config.json").write_text(json.dumps(peer))
    options = RunDir(run).options()
    assert (options["seed"], options["table"]) == (3, "/somewhere/training_samples")
    head = header(render(run))
    assert (head["seed"], head["max epochs"]) == ("3", "not recorded")

    (run / "config.json").write_text(json.dumps({**config, "format": 99}))
    with pytest.raises(TrainerError, match="newer than this trainer reads"):
        RunDir(run).config()


def test_bad_directories_are_one_line_errors(tmp_path):
    with pytest.raises(TrainerError, match="no such directory"):
        write_report(tmp_path / "missing")
    with pytest.raises(TrainerError, match="neither a run"):
        write_report(tmp_path)
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(TrainerError, match="cannot read metrics"):
        write_report(tmp_path)


# ---------------------------------------------------------------------------- a real ladder


def oracle_entry(table: Path, doc: dict) -> dict:
    """The oracle rung from the generator's true click probabilities (the table's test day is its last)."""
    _, truth = make_samples(**TABLE)
    t = ds.dataset(str(table), format="orc", partitioning="hive").to_table(
        columns=["item_id", "label", "date"]).to_pandas()
    t["date"] = t["date"].astype(str)
    test = (t["date"] == doc["split"]["test_days"][-1]).to_numpy()
    item_counts = t[t["date"].isin(doc["split"]["train_days"])]["item_id"].value_counts()
    zero = cold_bucket(t["item_id"].map(item_counts).fillna(0).to_numpy()) == 0
    y = t["label"].to_numpy()

    def stat(mask):
        a = M.auc(y[mask], truth[mask])
        return {"mean": a, "std": None, "values": [a]}

    return {"auc": stat(test), "item zero": stat(test & zero)}


@pytest.fixture(scope="module")
def ladder(table, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ladder") / "ladder"
    assert main(["ladder", "--table", str(table), "--out", str(out), "--seeds", "2", "--rungs", "dnn",
                 "mmoe", "--epochs", "1", "--device", "cpu", "--threads", "1", "--quiet"]) == 0
    doc = json.loads((out / "ladder.json").read_text())
    rungs = doc["test_auc"]
    rungs.setdefault("oracle", oracle_entry(table, doc))
    # a peer row in the shape the ladder gives it (stand-in values until the ladder runs the peer)
    rungs.setdefault("lightgbm", json.loads(json.dumps(rungs["dnn"])))
    (out / "ladder.json").write_text(json.dumps(doc))
    return out


def test_ladder_page(ladder):
    page = render(ladder)
    doc = json.loads((ladder / "ladder.json").read_text())
    assert images(page) == {"report_ladder.png"}
    rows = page.rows("ladder")
    ours = [r for r in doc["test_auc"] if r != "oracle" and not r.startswith("lightgbm")]
    peers = [r for r in doc["test_auc"] if r.startswith("lightgbm")]
    assert [r["rung"] for r in rows] == [*ours, *peers, "oracle", "test rows"]
    for r in rows[:-1]:
        for column, cell in r.items():
            if column == "rung":
                continue
            stat = doc["test_auc"][r["rung"]].get(column)
            if not stat or stat["mean"] is None:
                assert cell == "n/a"
                continue
            mean, _, std = cell.partition(" ± ")
            assert mean == f"{stat['mean']:.4f}"
            assert std == ("" if stat["std"] is None else f"{stat['std']:.4f}")
    assert {"auc", "item zero", "user zero"} <= set(rows[0])
    classes = dict(zip([r["rung"] for r in rows], page.row_classes["ladder"][1:], strict=True))
    assert classes["oracle"] == "oracle" and classes["lightgbm"] == "peer" and classes["dnn"] == "model"
    sizes = rows[-1]
    assert int(sizes["auc"].replace(",", "")) == doc["test_rows"]["auc"]
    assert not [n for n in page.notes if "oracle" in n or "peer" in n]
    # each rung's runs are linked
    assert any(href.endswith("runs/dnn-seed1/metrics.json") for href in page.links.values())


def test_ladder_page_without_oracle_or_peers_says_so(ladder, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    doc = json.loads((ladder / "ladder.json").read_text())
    doc["test_auc"] = {k: v for k, v in doc["test_auc"].items() if k in ("dnn", "mmoe")}
    (bare / "ladder.json").write_text(json.dumps(doc))
    page = render(bare)
    assert [r["rung"] for r in page.rows("ladder")] == ["dnn", "mmoe", "test rows"]
    notes = " ".join(page.notes)
    assert "No oracle entry" in notes and "No peer rows" in notes


def test_ladder_page_reads_each_rungs_kind_from_its_recorded_definition(ladder, tmp_path):
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    doc = json.loads((ladder / "ladder.json").read_text())
    doc["test_auc"] = {k: v for k, v in doc["test_auc"].items() if k in ("dnn", "mmoe")}
    # a peer and an oracle under names the trainer does not define: ladder.json's `rungs` says what they are
    doc["test_auc"]["gbm-2"] = doc["test_auc"]["dnn"]
    doc["test_auc"]["truth"] = doc["test_auc"]["mmoe"]
    doc["rungs"] = {**doc["rungs"], "gbm-2": {"peer": "lightgbm"}, "truth": {"peer": "oracle"}}
    (renamed / "ladder.json").write_text(json.dumps(doc))
    page = render(renamed)
    rows = [r["rung"] for r in page.rows("ladder")]
    assert rows == ["dnn", "mmoe", "gbm-2", "truth", "test rows"]
    assert page.row_classes["ladder"][1:-1] == ["model", "model", "peer", "oracle"]
    assert not [n for n in page.notes if "oracle" in n or "peer" in n]
