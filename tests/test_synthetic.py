"""The synthetic log generator: CLI, determinism, CSV shape, manifest, planted signal.

Records are read back with independent readers (Python's csv module, pandas with both
engines, and optionally Spark) and classified with rules written here, not imported
from the generator, so a generator bug cannot hide behind itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (["user_id", "item_id", "log_time", "label", "bill_entity_seq", "service_entity_seq",
            "query_entity_seq", "item_entity_names", "item_title", "scene"]
           + [f"deep_features_{k}" for k in range(27)])
KINDS = ["bad_log_time", "bad_label", "bad_scene", "missing_user_id", "missing_item_id",
         "too_few_fields", "too_many_fields"]
LONG_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
SHORT_TIME = re.compile(r"\d{4}/[1-9]\d?/[1-9]\d? \d{1,2}:\d{2}")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthetic", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)


def generate(out: Path, *args: str) -> dict:
    done = run_cli("generate", "--out", str(out), "--quiet", *args)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "manifest.json").read_text())


def parse_time(text: str) -> dt.datetime | None:
    for pattern, fmt in ((LONG_TIME, "%Y-%m-%d %H:%M:%S"), (SHORT_TIME, "%Y/%m/%d %H:%M")):
        if pattern.fullmatch(text):
            try:
                return dt.datetime.strptime(text, fmt)
            except ValueError:
                return None
    return None


def classify(fields: list[str], n_columns: int) -> str:
    """The reject reason of one raw record ('clean' when it has none)."""
    if len(fields) < n_columns:
        return "too_few_fields"
    if len(fields) > n_columns:
        return "too_many_fields"
    row = dict(zip(COLUMNS, fields))
    if row["user_id"] == "":
        return "missing_user_id"
    if row["item_id"] == "":
        return "missing_item_id"
    if parse_time(row["log_time"]) is None:
        return "bad_log_time"
    if row["label"] not in ("0", "1"):
        return "bad_label"
    if row["scene"] not in ("0", "1", "2", "3", "4"):
        return "bad_scene"
    return "clean"


def read_records(out: Path, header: bool = True) -> pd.DataFrame:
    """Every raw record with its part, record number, fields and reject reason."""
    rows = []
    for part in sorted(out.glob("part-*.csv")):
        with part.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            n_columns = len(next(reader)) if header else len(COLUMNS)
            for k, fields in enumerate(reader):
                rows.append({"part": part.name, "record": k, "fields": fields,
                             "kind": classify(fields, n_columns)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic") / "raw"
    return out, generate(out, "--rows", "60000", "--days", "8", "--seed", "11")


@pytest.fixture(scope="module")
def records(sample) -> pd.DataFrame:
    return read_records(sample[0])


@pytest.fixture(scope="module")
def truth(sample) -> pd.DataFrame:
    return pd.read_parquet(sample[0] / "truth.parquet")


@pytest.fixture(scope="module")
def clean(records) -> pd.DataFrame:
    """Clean records as a table with the raw column names."""
    rows = records[records.kind == "clean"]
    table = pd.DataFrame(rows["fields"].tolist(), columns=COLUMNS, index=rows.index)
    return pd.concat([rows[["part", "record"]], table], axis=1).reset_index(drop=True)


# --- CLI ---------------------------------------------------------------------------------

def test_help_documents_every_option():
    done = run_cli("generate", "--help")
    assert done.returncode == 0
    for option in ("--rows", "--days", "--seed", "--out", "--start", "--no-header",
                   "--deep-features", "--parts", "--bad-rate", "--users", "--items", "--lang",
                   "--quiet"):
        assert option in done.stdout, option
    assert "truth.parquet" in done.stdout and "manifest.json" in done.stdout


@pytest.mark.parametrize("args", [
    ["--rows", "0"],
    ["--rows", "many"],
    ["--days", "-3"],
    ["--start", "2024-13-01"],
    ["--deep-features", "28"],
    ["--no-header", "--deep-features", "10"],
    ["--bad-rate", "0.9"],
    ["--colour", "red"],
    ["--lang", "fr"],
])
def test_bad_arguments_exit_2_with_one_error_line(tmp_path, args):
    done = run_cli("generate", "--out", str(tmp_path / "raw"), *args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, done.stderr
    assert not (tmp_path / "raw").exists()


# --- determinism and layout --------------------------------------------------------------

def test_same_seed_gives_byte_identical_files(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, "5"), (b, "5"), (c, "6")):
        generate(out, "--rows", "3000", "--days", "3", "--seed", seed)
    names = sorted(p.name for p in a.iterdir())
    assert names == ["bad.parquet", "manifest.json", "part-00000.csv", "part-00001.csv",
                     "part-00002.csv", "part-00003.csv", "truth.parquet"]
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "part-00000.csv").read_bytes() != (c / "part-00000.csv").read_bytes()


def test_per_row_draws_made_in_chunks_give_the_same_files(tmp_path, monkeypatch):
    # The per-row features are drawn in chunks of DRAW_ROWS rows to bound memory at 10M rows; the
    # chunks must take the generator's numbers in the same order as one draw would.
    from synthetic import impressions
    from synthetic.generate import Config
    from synthetic.generate import generate as generate_files

    cfg = Config(rows=3000, days=3, seed=5)
    generate_files(cfg, tmp_path / "whole")
    monkeypatch.setattr(impressions, "DRAW_ROWS", 7)
    generate_files(cfg, tmp_path / "chunked")
    for path in sorted((tmp_path / "whole").iterdir()):
        assert path.read_bytes() == (tmp_path / "chunked" / path.name).read_bytes(), path.name


# sha256 of the English files that seed 5, 3000 rows, 3 days gave before --lang existed: adding a
# language must not move a byte of them (parquet files are left out: their footer names the
# pyarrow version that wrote them).
ENGLISH_SHA256 = {
    "manifest.json": "9056ddbf2cfdc966b60b9667ce34dbe980a7445881b8ab03636f0186ed4c8ac0",
    "part-00000.csv": "a8e7c4155c203f21a6f348845ff37d37b38229c6626be41258aa801b8fed56c4",
    "part-00001.csv": "c0835edbed9b1ebfe5b63ec99f2466a05d1cbdadb6af489a536698a55a875fab",
    "part-00002.csv": "dca2ac9786027e6044da7c0b886d5fb9368ff0ce124d5955b92a7a16e1472a92",
    "part-00003.csv": "980d49f0b6b82259bf19c55b88bf9b03c36655a2bd9171dd097a0a3175d1a3b8",
}
HAN = re.compile(r"[\u4e00-\u9fff]")


def test_english_output_is_unchanged_and_chinese_is_the_same_world(tmp_path):
    en, zh = tmp_path / "en", tmp_path / "zh"
    generate(en, "--rows", "3000", "--days", "3", "--seed", "5")
    manifest = generate(zh, "--rows", "3000", "--days", "3", "--seed", "5", "--lang", "zh")
    for name, digest in ENGLISH_SHA256.items():
        assert hashlib.sha256((en / name).read_bytes()).hexdigest() == digest, name
    assert manifest["args"]["lang"] == "zh"
    pd.testing.assert_frame_equal(pd.read_parquet(en / "truth.parquet"),
                                  pd.read_parquet(zh / "truth.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(en / "bad.parquet"),
                                  pd.read_parquet(zh / "bad.parquet"))
    text = ["bill_entity_seq", "service_entity_seq", "query_entity_seq", "item_entity_names",
            "item_title"]
    a, b = read_records(en), read_records(zh)
    assert (a.kind == b.kind).all()
    ca = pd.DataFrame(a[a.kind == "clean"]["fields"].tolist(), columns=COLUMNS)
    cb = pd.DataFrame(b[b.kind == "clean"]["fields"].tolist(), columns=COLUMNS)
    other = [c for c in COLUMNS if c not in text]
    pd.testing.assert_frame_equal(ca[other], cb[other])
    # Same number of entities in every list; Chinese lists use both commas, titles no spaces.
    for column in text[:4]:
        count = cb[column].str.count("[,，]") + (cb[column] != "")
        assert (count == ca[column].str.count(",") + (ca[column] != "")).all(), column
        assert not cb[column].str.contains(r"[a-z]").any(), column
    lists = pd.concat([cb[c] for c in text[:4]])
    assert lists.str.contains("，").any() and lists.str.contains(",").any()
    titles = cb["item_title"][cb["item_title"] != ""]
    assert titles.map(lambda t: bool(HAN.search(t))).all()
    assert not titles.str.contains(r"[a-z] [a-z]|[\u4e00-\u9fff] [\u4e00-\u9fff]").any()
    # Titles mix the item's own entities with other words.
    shares = [any(e in t for e in re.split("[,，]", n) if e)
              for t, n in zip(cb["item_title"], cb["item_entity_names"]) if t and n]
    assert 0.2 < np.mean(shares) < 1.0


def test_rerun_into_same_directory_replaces_old_parts(tmp_path):
    out = tmp_path / "raw"
    generate(out, "--rows", "2000", "--days", "2", "--parts", "6")
    manifest = generate(out, "--rows", "2000", "--days", "2", "--parts", "2")
    assert sorted(p.name for p in out.glob("*.csv")) == ["part-00000.csv", "part-00001.csv"]
    assert len(read_records(out)) == manifest["records"]


def test_header_is_the_contract_column_order(sample):
    out, manifest = sample
    for part in out.glob("part-*.csv"):
        assert part.read_text().split("\n", 1)[0] == ",".join(COLUMNS)
    assert manifest["columns"] == COLUMNS


def test_no_header_and_fewer_deep_features(tmp_path):
    bare = generate(tmp_path / "bare", "--rows", "2000", "--days", "2", "--no-header",
                    "--seed", "2")
    first = next(csv.reader((tmp_path / "bare" / "part-00000.csv").open(newline="")))
    assert first[0] != "user_id" and first[0].startswith("u")
    records = read_records(tmp_path / "bare", header=False)
    assert len(records) == bare["records"]
    assert (records.kind == "clean").sum() == bare["clean"]

    slim = generate(tmp_path / "slim", "--rows", "2000", "--days", "2", "--deep-features", "5")
    header = next(csv.reader((tmp_path / "slim" / "part-00000.csv").open(newline="")))
    assert header == COLUMNS[:15]
    records = read_records(tmp_path / "slim")
    assert (records.kind == "clean").sum() == slim["clean"]


# --- records, manifest and truth agree with independent readers --------------------------

def test_manifest_counts_equal_what_csv_readers_read(sample, records):
    out, manifest = sample
    assert len(records) == manifest["records"] == 60000
    assert manifest["clean"] + manifest["bad"]["total"] == manifest["records"]
    for part in manifest["parts"]:
        in_part = records[records.part == part["file"]]
        assert len(in_part) == part["records"]
        assert (in_part.kind == "clean").sum() == part["clean"]
    # Every kind occurs, about evenly, and the bad share is about 2%.
    by_kind = records.kind.value_counts().to_dict()
    assert {k: by_kind.get(k, 0) for k in KINDS} == manifest["bad"]["by_kind"]
    assert min(manifest["bad"]["by_kind"].values()) > 100
    assert 0.015 < manifest["bad"]["total"] / manifest["records"] < 0.025

    # pandas, both engines, RFC 4180 quoting: one row per record, bad records included.
    for part in manifest["parts"]:
        path = out / part["file"]
        too_many: list[list[str]] = []
        py = pd.read_csv(path, engine="python", quotechar='"', dtype=str,
                         keep_default_na=False, on_bad_lines=too_many.append)
        c = pd.read_csv(path, engine="c", quotechar='"', dtype=str, keep_default_na=False,
                        on_bad_lines="skip")
        n_too_many = int((records[records.part == part["file"]].kind == "too_many_fields").sum())
        assert len(too_many) == n_too_many
        assert len(py) == len(c) == part["records"] - n_too_many
        assert list(py.columns) == COLUMNS


def test_bad_parquet_lists_every_malformed_record(sample, records):
    bad = pd.read_parquet(sample[0] / "bad.parquet")
    seen = records[records.kind != "clean"][["part", "record", "kind"]]
    merged = bad.merge(seen, on=["part", "record"], how="outer", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert (merged["reject_reason"] == merged["kind"]).all()


def test_truth_has_exactly_the_clean_records(truth, clean):
    assert len(truth) == len(clean)
    merged = truth.merge(clean, on=["part", "record"], suffixes=("", "_csv"))
    assert len(merged) == len(truth)
    for col in ("user_id", "item_id", "log_time"):
        assert (merged[col] == merged[f"{col}_csv"]).all(), col
    assert (merged["label"].astype(str) == merged["label_csv"]).all()
    assert (merged["scene"].astype(str) == merged["scene_csv"]).all()
    parsed = merged["log_time"].map(parse_time)
    assert (pd.to_datetime(parsed) == merged["log_ts"]).all()
    assert (merged["log_ts"].dt.date == merged["date"]).all()
    # The documented join key is unique.
    assert not truth.duplicated(["user_id", "item_id", "log_time"]).any()
    assert truth["p_click"].between(0, 1, inclusive="neither").all()


def test_truth_line_is_where_the_record_starts(sample, truth):
    out = sample[0]
    some = truth[truth.part == "part-00001.csv"].sample(200, random_state=0)
    lines = (out / "part-00001.csv").read_text(encoding="utf-8").split("\n")
    for row in some.itertuples():
        assert lines[row.line - 1].startswith(f"{row.user_id},{row.item_id},")


def test_both_time_formats_and_date_range(clean, sample):
    manifest = sample[1]
    short = clean["log_time"].str.fullmatch(SHORT_TIME.pattern)
    long = clean["log_time"].str.fullmatch(LONG_TIME.pattern)
    assert (short | long).all()
    assert 0.25 < short.mean() < 0.35
    # The short form has no zero padding.
    assert clean.loc[short, "log_time"].str.contains(r"/[1-9]/|\s[0-9]:").any()
    dates = clean["log_time"].map(parse_time).map(lambda t: t.date().isoformat())
    assert dates.min() == manifest["date_range"]["start"] == "2024-03-01"
    assert dates.max() == manifest["date_range"]["end"] == "2024-03-08"


def test_clean_records_carry_hard_text_and_empty_values(clean):
    title = clean["item_title"]
    assert title.str.contains('"').sum() > 50
    assert title.str.contains("\n").sum() > 50
    assert title.str.contains(",").sum() > 50
    assert (title == "").sum() > 10
    assert clean["bill_entity_seq"].str.contains(",").mean() > 0.9
    assert (clean["query_entity_seq"] == "").sum() > 100
    deep = clean[COLUMNS[10:]]
    assert (deep == "").to_numpy().mean() > 0.005
    assert pd.to_numeric(deep.stack().replace("", np.nan).dropna()).notna().all()


# --- planted structure -------------------------------------------------------------------

def test_cold_start_rates_on_the_last_days(sample, truth):
    manifest = sample[1]
    last = truth["date"].max()
    before = truth[truth["date"] < last]
    today = truth[truth["date"] == last]
    new_users = (~pd.Series(today["user_id"].unique()).isin(before["user_id"])).mean()
    new_items = (~pd.Series(today["item_id"].unique()).isin(before["item_id"])).mean()
    assert new_users == pytest.approx(manifest["cold_start"]["new_user_rate"], abs=1e-4)
    assert new_items == pytest.approx(manifest["cold_start"]["new_item_rate"], abs=1e-4)
    assert 0.12 < new_users < 0.3
    assert 0.08 < new_items < 0.25


def test_scene_base_rates_are_distinct(sample):
    ctr = [sample[1]["scenes"][str(s)]["ctr"] for s in range(5)]
    assert ctr == sorted(ctr) and ctr[0] < 0.035 and ctr[-1] > 0.1


def test_oracle_auc_is_informative_but_not_perfect(truth):
    last = truth["date"].max()
    test = truth[truth["date"] == last]
    oracle = roc_auc_score(test["label"], test["p_click"])
    scene_rate = truth[truth["date"] < last].groupby("scene")["label"].mean()
    scene_only = roc_auc_score(test["label"], test["scene"].map(scene_rate))
    assert 0.7 < oracle < 0.92
    assert oracle > scene_only + 0.08


def _text(clean: pd.DataFrame, columns: list[str]) -> pd.Series:
    return clean[columns].agg(" ".join, axis=1).str.replace(",", " ")


def test_text_alone_predicts_clicks_on_items_without_history(truth, clean):
    data = truth.merge(clean, on=["part", "record"], suffixes=("", "_csv"))
    user_text = _text(data, ["bill_entity_seq", "service_entity_seq", "query_entity_seq"])
    item_text = _text(data, ["item_entity_names", "item_title"])
    last = data["date"].max()
    train = (data["date"] < last).to_numpy()
    cold = ((data["date"] == last) & ~data["item_id"].isin(data.loc[train, "item_id"])).to_numpy()
    assert cold.sum() > 500

    users = TfidfVectorizer(min_df=2).fit(user_text[train])
    items = TfidfVectorizer(min_df=2).fit(item_text[train])
    shared = TfidfVectorizer().fit(pd.concat([user_text[train], item_text[train]]))
    overlap = shared.transform(user_text).multiply(shared.transform(item_text)).sum(axis=1)
    x = hstack([users.transform(user_text), items.transform(item_text),
                csr_matrix(np.asarray(overlap))]).tocsr()
    y = data["label"].to_numpy()
    # Strong regularisation: the vocabulary is large next to the clicks of a small sample.
    model = LogisticRegression(C=0.1, max_iter=1000).fit(x[train], y[train])
    auc = roc_auc_score(y[cold], model.predict_proba(x[cold])[:, 1])
    assert auc > 0.55


# --- Spark reads the files the way the warehouse does ------------------------------------

@pytest.mark.spark
def test_spark_multiline_reader_reads_every_record(spark, sample, truth):
    out, manifest = sample
    df = spark.read.csv(str(out / "part-*.csv"), header=True, multiLine=True, quote='"',
                        escape='"', inferSchema=False)
    assert df.columns == COLUMNS
    assert df.count() == manifest["records"]
    keys = df.select("user_id", "item_id", "log_time", "label", "item_title").toPandas()
    merged = truth.merge(keys, on=["user_id", "item_id", "log_time"], suffixes=("", "_spark"))
    assert len(merged) == len(truth)
    assert (merged["label"].astype(str) == merged["label_spark"]).all()
    titles = merged["item_title"].fillna("")
    assert titles.str.contains("\n").any() and titles.str.contains('"').any()
