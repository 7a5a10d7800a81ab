"""Incremental builds of the dbt warehouse: real `dbt build`s on the shared SparkSession.

One small generated log (six days, with a header) is split into one folder per day
(`synthetic.days.split_by_day`, as `bench/warehouse.py` lays out its logs). The final raw layout mixes both daily layouts: days 1-5
in `date=YYYY-MM-DD/` folders, day 6 as flat compressed files (`.csv.gz`, `.csv.bz2`), plus a
file the build does not read. Its full build is the reference; two chains of incremental builds
is what a chain of incremental builds in one schema must equal, table for table, row for row and
column for column, after each step that leaves the same files:

- days 1-5; then day 6 added (a new day): equal; then a build with nothing new: equal;
- then day 4 removed, one day-5 file truncated and an extra day-5 file added (the other one under
  another name); then day 4 back, late (day 6 is in), the truncated file replaced by the real
  one, the extra file removed and a day-6 file delivered again with the same bytes: equal.

The chain's first build also holds the serving snapshot as of the start of day 6, which must give
day 6's rows of the reference exactly the features the reference computed.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from m2ctr import schema
from synthetic.days import split_by_day

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "warehouse" / "models"
# Per-run working tables: its plan (stg_raw_files, stg_build_dates) and the state at the start of
# its first rebuilt day (int_*_state). They describe the run, not the data, so they differ between
# an incremental and a full build.
PER_RUN = {
    "stg_raw_files",
    "stg_build_dates",
    "int_user_state",
    "int_item_state",
    "int_user_item_state",
}
# The same bytes in two directories: another path and modification time, and another load time.
AUDIT_RUN_COLUMNS = ("file_path", "modification_time", "loaded_at")
# Every table a build leaves (ephemeral models are no table).
COMPARED = sorted(
    {p.stem for p in MODELS.rglob("*.sql") if "materialized='ephemeral'" not in p.read_text()}
    - PER_RUN
)


# --------------------------------------------------------------------------- raw layouts


@pytest.fixture(scope="module")
def days_split(tmp_path_factory):
    """The generated log split into date=YYYY-MM-DD/part-*.csv folders, and its manifest."""
    gen = tmp_path_factory.mktemp("gen")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "synthetic",
            "generate",
            "--rows",
            "2400",
            "--days",
            "6",
            "--seed",
            "11",
            "--parts",
            "2",
            "--out",
            str(gen),
            "--quiet",
        ],
        cwd=ROOT,
        check=True,
    )
    split = tmp_path_factory.mktemp("split")
    days = split_by_day(gen, split)
    assert len(days) == 6
    return split, days, json.loads((gen / "manifest.json").read_text())


def _copy_day(split: Path, day: str, raw: Path, flat: bool) -> None:
    """One day's files into raw: a date= folder, or (flat) .csv.gz / .csv.bz2 files at the top."""
    src = split / f"date={day}"
    if not flat:
        shutil.copytree(src, raw / src.name)
        return
    for part, (suffix, opener) in zip(
        sorted(src.iterdir()), ((".csv.gz", gzip.open), (".csv.bz2", bz2.open))
    ):
        with opener(raw / f"flat-{part.stem}{suffix}", "wb") as f:
            f.write(part.read_bytes())


def _raw(tmp_path_factory, name, split, days, skip=()) -> Path:
    """The final layout (the last day flat and compressed, a file that is not a log) minus `skip`."""
    raw = tmp_path_factory.mktemp(name) / "raw"
    raw.mkdir()
    for day in days:
        if day not in skip:
            _copy_day(split, day, raw, flat=day == days[-1])
    (raw / "notes.txt").write_text("not a log\n")
    return raw


def _touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


# --------------------------------------------------------------------------- builds


def _built(build):
    assert build.success, build.failures()
    return build


@pytest.fixture(scope="module")
def full(dbt_build, tmp_path_factory, days_split):
    split, days, _ = days_split
    return _built(dbt_build(_raw(tmp_path_factory, "full", split, days), "inc_full"))


@pytest.fixture(scope="module")
def chain(tmp_path_factory, days_split) -> Path:
    """The raw folder of the incremental chain: days 1-5 to start with."""
    split, days, _ = days_split
    return _raw(tmp_path_factory, "chain", split, days, skip={days[-1]})


@pytest.fixture(scope="module")
def first_days(dbt_build, tmp_path_factory, chain):
    """Days 1-5 built, and a copy of its snapshots (the chain goes on in the same schema)."""
    build = _built(dbt_build(chain, "inc_chain"))
    saved = tmp_path_factory.mktemp("snapshots_days_1_5")
    for model in ("user_features_snapshot", "item_features_snapshot", "user_item_snapshot"):
        shutil.copytree(build.table_dir(model), saved / model)
    return build, saved


@pytest.fixture(scope="module")
def new_day(dbt_build, chain, first_days, days_split):
    split, days, _ = days_split
    _copy_day(split, days[-1], chain, flat=True)
    return _built(dbt_build(chain, "inc_chain"))


@pytest.fixture(scope="module")
def nothing_new(dbt_build, chain, new_day):
    before = _orc_files(new_day, "training_samples")
    return before, _built(dbt_build(chain, "inc_chain"))


@pytest.fixture(scope="module")
def day_gone(dbt_build, chain, nothing_new, days_split):
    """Day 4's folder deleted, a day-5 file truncated and an extra day-5 file (the other one again,
    so the same records under other ids) added."""
    split, days, _ = days_split
    shutil.rmtree(chain / f"date={days[3]}")
    real = chain / f"date={days[4]}" / "part-00000.csv"
    lines = real.read_text().splitlines(keepends=True)
    real.write_text("".join(lines[: len(lines) // 2]))
    shutil.copy(
        split / f"date={days[4]}" / "part-00001.csv", chain / f"date={days[4]}" / "extra.csv"
    )
    return _built(dbt_build(chain, "inc_chain"))


@pytest.fixture(scope="module")
def day_late(dbt_build, chain, day_gone, days_split):
    """Day 4 back, late (day 6 is in); the truncated file replaced by the real one; the extra file
    removed; a day-6 file delivered again with the same bytes."""
    split, days, _ = days_split
    shutil.copytree(split / f"date={days[3]}", chain / f"date={days[3]}")
    shutil.copy(split / f"date={days[4]}" / "part-00000.csv", chain / f"date={days[4]}")
    (chain / f"date={days[4]}" / "extra.csv").unlink()
    again = next(chain.glob("flat-*.csv.gz"))
    again.write_bytes(again.read_bytes())
    _touch_later(again)
    return _built(dbt_build(chain, "inc_chain"))


# --------------------------------------------------------------------------- helpers


def _table(spark, build, model, exclude=()):
    frame = spark.read.orc(str(build.table_dir(model)))
    return frame.select([c for c in frame.columns if c not in exclude])


def _differences(spark, a, b) -> dict[str, tuple[int, int, int]]:
    """Per model: (rows of a, rows of b, rows in one of them but not in the other)."""
    out = {}
    for model in COMPARED:
        exclude = AUDIT_RUN_COLUMNS if model == "raw_file_audit" else ()
        x, y = _table(spark, a, model, exclude), _table(spark, b, model, exclude)
        assert sorted(x.columns) == sorted(y.columns), model
        y = y.select(x.columns)
        apart = x.exceptAll(y).count() + y.exceptAll(x).count()
        if apart or x.count() != y.count():
            out[model] = (x.count(), y.count(), apart)
    return out


def _status(spark, build) -> dict[str, str]:
    rows = spark.table(f"{build.schema}.stg_raw_files").collect()
    return {r["source_file"]: r["status"] for r in rows}


def _parsed(build) -> set[str]:
    """The files this run parsed: the source_file partitions of stg_raw_records (the only model
    that reads the CSV) that it wrote, i.e. whose ORC files are newer than the run's start."""
    table = build.table_dir("stg_raw_records")
    return {
        unquote(p.parent.name.removeprefix("source_file="))
        for p in table.glob("source_file=*/*.orc")
        if p.stat().st_mtime_ns >= build.started_ns
    }


def _orc_files(build, model) -> list[Path]:
    return sorted(
        p.relative_to(build.table_dir(model)) for p in build.table_dir(model).rglob("*.orc")
    )


def _dbt_log(tmp_path_factory, schema_name) -> str:
    logs = sorted(tmp_path_factory.getbasetemp().glob(f"dbt*/{schema_name}/logs/dbt.log"))
    assert logs, schema_name
    return logs[-1].read_text()


# --------------------------------------------------------------------------- the full build


def test_full_build_reads_every_layout_and_warns_about_the_rest(
    spark, full, days_split, tmp_path_factory
):
    _, days, manifest = days_split
    audit = {r["source_file"]: r for r in _table(spark, full, "raw_file_audit").collect()}
    # Compressed flat parts are read like plain ones; day folders keep their folder in the name.
    compressed = sorted(f for f in audit if f.startswith("flat-"))
    assert [f.rsplit(".", 1)[-1] for f in compressed] == ["gz", "bz2"]
    assert all(audit[f]["records"] > 0 for f in compressed)
    assert f"date={days[0]}/part-00000.csv" in audit
    # Nothing lost: every generated record is in the audit, and staged or quarantined, file by file.
    assert sum(r["records"] for r in audit.values()) == manifest["records"]
    assert all(r["records"] == r["staged"] + r["quarantined"] for r in audit.values())
    staged = _table(spark, full, "stg_impressions").groupBy("source_file").count().collect()
    assert {r[0]: r[1] for r in staged} == {f: r["staged"] for f, r in audit.items() if r["staged"]}
    # The file it does not read is named in a warning, and listed as ignored.
    assert _status(spark, full)["notes.txt"] == "ignored"
    log = _dbt_log(tmp_path_factory, "inc_full")
    assert "m2ctr: not read, the name does not match" in log and "notes.txt" in log


def test_training_samples_columns_match_their_yml_description(spark, full):
    """The column contract lives in _marts.yml: listed columns with types, and the families of columns
    generated from the vars. The built table has exactly those columns, in table order, with those types."""
    model = next(
        m
        for m in yaml.safe_load((MODELS / "marts" / "_marts.yml").read_text())["models"]
        if m["name"] == "training_samples"
    )
    listed = {c["name"]: c["data_type"] for c in model["columns"]}
    assert all(c.get("description") for c in model["columns"])
    family_types = {f["data_type"] for f in model["meta"]["column_families"]}
    per_scene = {c for c in schema.HISTORY_FEATURES if "_cum_s" in c}
    expected_types = {
        **{c: "bigint" for c in per_scene},
        **{c: "string" for c in schema.TEXT_COLUMNS},
        **{c: "double" for c in schema.DEEP_FEATURES},
        **listed,
    }
    assert family_types == {"bigint", "string", "double"}
    built = _table(spark, full, "training_samples").schema
    expected_order = [
        *schema.KEY_COLUMNS,
        "log_ts",
        *schema.HISTORY_FEATURES,
        *schema.LAST_HIST_DATES,
        *schema.TEXT_COLUMNS,
        *schema.DEEP_FEATURES,
        "date",
    ]
    assert [f.name for f in built] == expected_order
    assert {f.name: f.dataType.simpleString() for f in built} == expected_types


# --------------------------------------------------------------------------- the chain


def test_snapshot_of_days_before_gives_the_next_days_features(spark, full, first_days, days_split):
    _, saved = first_days
    _, days, _ = days_split
    day_n = _table(spark, full, "training_samples").where(f"date = '{days[-1]}'")
    day_n.createOrReplaceTempView("day_n")
    for model in ("user_features_snapshot", "item_features_snapshot", "user_item_snapshot"):
        spark.read.orc(str(saved / model)).createOrReplaceTempView(model)
    lookups = {
        "u": ("user_features_snapshot", ["user_id"], True),
        "i": ("item_features_snapshot", ["item_id"], True),
        "ui": ("user_item_snapshot", ["user_id", "item_id"], False),
    }
    selects, joins = [], []
    for side, (table, keys, by_scene) in lookups.items():
        scene = " and {a}.scene = day_n.scene" if by_scene else ""
        found = " and ".join(f"{side}.{k} = day_n.{k}" for k in keys) + scene.format(a=side)
        default = " and ".join(f"{side}0.{k} is null" for k in keys) + scene.format(a=f"{side}0")
        joins.append(f"left join {table} {side} on {found} left join {table} {side}0 on {default}")
        columns = [
            c
            for c in (*schema.HISTORY_FEATURES, *schema.LAST_HIST_DATES)
            if c.split("_")[0] == side
        ]
        selects += [
            f"if({side}.{keys[0]} is null, {side}0.{c}, {side}.{c}) as {c}" for c in columns
        ]
        dates = spark.sql(f"select distinct date from {table}").collect()
        assert [r[0].isoformat() for r in dates] == [days[-1]], table  # as of the start of day N
    served = spark.sql(
        f"select day_n.impression_id, {', '.join(selects)} from day_n {' '.join(joins)}"
    )
    trained = day_n.select(served.columns)
    assert trained.count() == served.count() > 0
    assert trained.exceptAll(served).count() == 0 and served.exceptAll(trained).count() == 0
    # Every scene has a row for an entity without history, so unknown users and items are served.
    no_user = spark.sql("select scene from user_features_snapshot where user_id is null").collect()
    assert sorted(r[0] for r in no_user) == list(schema.SCENES)


def test_a_new_day_parses_only_its_files_and_equals_the_full_build(spark, full, new_day):
    status = _status(spark, new_day)
    new = {f for f, s in status.items() if s == "new"}
    assert new == {f for f in status if f.startswith("flat-")}
    assert {s for f, s in status.items() if f not in new} == {"unchanged", "ignored"}
    assert _parsed(new_day) == new
    assert _differences(spark, new_day, full) == {}


def test_a_build_with_nothing_new_changes_nothing(spark, full, nothing_new):
    before, again = nothing_new
    assert set(_status(spark, again).values()) == {"unchanged", "ignored"}
    assert _parsed(again) == set()
    assert _orc_files(again, "training_samples") == before  # not one file rewritten
    assert _differences(spark, again, full) == {}


def test_a_removed_day_leaves_no_row_behind(spark, day_gone, days_split):
    _, days, _ = days_split
    status = _status(spark, day_gone)
    assert {status[f] for f in status if f.startswith(f"date={days[3]}/")} == {"removed"}
    assert status[f"date={days[4]}/part-00000.csv"] == "changed"
    assert status[f"date={days[4]}/extra.csv"] == "new"
    dates = {r["date"].isoformat(): r for r in spark.table("inc_chain.stg_build_dates").collect()}
    assert dates[days[3]]["restaged"] and not dates[days[3]]["live"]
    for model in ("stg_impressions", "int_user_daily", "user_features_daily", "training_samples"):
        assert not (day_gone.table_dir(model) / f"date={days[3]}").exists(), model
    audit = _table(spark, day_gone, "raw_file_audit").collect()
    assert not [r for r in audit if r["source_file"].startswith(f"date={days[3]}/")]


def test_a_late_day_and_replaced_removed_redelivered_files_end_equal_to_the_full_build(
    spark, full, day_late, days_split
):
    _, days, _ = days_split
    status = _status(spark, day_late)
    assert {status[f] for f in status if f.startswith(f"date={days[3]}/")} == {"new"}
    assert status[f"date={days[4]}/part-00000.csv"] == "changed"
    assert status[f"date={days[4]}/extra.csv"] == "removed"
    assert status[next(f for f in status if f.endswith(".csv.gz"))] == "changed"
    dates = {r["date"].isoformat(): r for r in spark.table("inc_chain.stg_build_dates").collect()}
    # The late day is restaged, the days before it are not; from it on everything is rebuilt.
    assert dates[days[3]]["restaged"] and not dates[days[2]]["restaged"]
    assert _differences(spark, day_late, full) == {}
