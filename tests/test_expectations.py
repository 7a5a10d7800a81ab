"""Data-quality suites against a real warehouse build, clean and corrupted.

One module-scoped `dbt build` (in-process, on the shared SparkSession) of a
generated sample; each corruption rewrites one table with Spark into a copy of
the build's schema directory and must make `python -m expectations validate`
exit 1, naming the failing expectation.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from expectations import SUITE_NAMES
from expectations.__main__ import main
from m2ctr.schema import RAW_REQUIRED


def spark_test(test):
    """Needs the shared SparkSession (and most of them the module's dbt build)."""
    return pytest.mark.slow(pytest.mark.spark(test))


ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- fixtures

SCHEMA = "m2ctr_gx"


@pytest.fixture(scope="module")
def built(spark, dbt_build, spark_warehouse_dir, tmp_path_factory):
    """(raw path, warehouse dir) of a clean build of a generated sample (schema SCHEMA)."""
    raw = tmp_path_factory.mktemp("gx-raw")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "synthetic",
            "generate",
            "--rows",
            "20000",
            "--days",
            "8",
            "--seed",
            "1",
            "--out",
            str(raw),
            "--quiet",
        ],
        cwd=ROOT,
        check=True,
    )
    build = dbt_build(raw, SCHEMA)
    assert build.success, build.failures()
    return raw, spark_warehouse_dir


@pytest.fixture
def run(built, monkeypatch, tmp_path):
    """Run the CLI in-process (sharing the SparkSession) against a warehouse dir."""
    raw, _ = built

    def _run(warehouse: Path, *args: str, report: Path | None = None) -> tuple[int, dict]:
        monkeypatch.setenv("CTR_WAREHOUSE_DIR", str(warehouse))
        monkeypatch.setenv("CTR_SCHEMA", SCHEMA)
        monkeypatch.setenv("CTR_RAW_PATH", str(raw))
        report = report or tmp_path / "report"
        code = main(["validate", "--report-dir", str(report), *args])
        summary = json.loads((report / "summary.json").read_text())
        return code, summary

    return _run


def failing(summary: dict) -> set[tuple[str, str]]:
    return {
        (suite, e["description"])
        for suite, s in summary["suites"].items()
        for e in s["expectations"]
        if not e["success"]
    }


def corrupt_copy(spark, warehouse: Path, dest: Path, model: str, transform) -> Path:
    """Copy the warehouse and rewrite one table of the copy with Spark."""
    shutil.copytree(warehouse / f"{SCHEMA}.db", dest / f"{SCHEMA}.db")
    source = warehouse / f"{SCHEMA}.db" / model
    target = dest / f"{SCHEMA}.db" / model
    partitions = [p.name.split("=")[0] for p in _partition_levels(source)]
    frame = transform(spark.read.orc(str(source)))
    shutil.rmtree(target)
    writer = frame.write.mode("overwrite")
    if partitions:
        writer = writer.partitionBy(*partitions)
    writer.orc(str(target))
    return dest


def _partition_levels(path: Path) -> list[Path]:
    levels = []
    while True:
        subdirs = sorted(p for p in path.iterdir() if p.is_dir() and "=" in p.name)
        if not subdirs:
            return levels
        levels.append(subdirs[0])
        path = subdirs[0]


# --------------------------------------------------------------------------- tests


@spark_test
def test_suites_pass_on_clean_build(built, run):
    _, warehouse = built
    # Kept in reports/ (git-ignored) so that CI can publish the clean build's report.
    code, summary = run(warehouse, report=ROOT / "reports" / "data_quality")
    print(f"data quality report: {summary['data_docs']}")
    assert failing(summary) == set()
    assert code == 0
    assert set(summary["suites"]) == {
        "raw",
        "stg_impressions",
        "quarantine_impressions",
        "user_features_daily",
        "item_features_daily",
        "user_item_history",
        "training_samples",
    }
    index = Path(summary["data_docs"])
    assert index.name == "index.html" and index.exists()
    html = index.read_text()
    for suite in summary["suites"]:
        assert suite in html, f"Data Docs index does not list {suite}"
    # the verdict beside the tables, where a run reads it (m2ctr.warehouse)
    beside = json.loads((warehouse / f"{SCHEMA}.db" / "_data_quality.json").read_text())
    assert beside["success"] is True and beside["created_at"] == summary["created_at"]
    assert beside["suites"] == {name: True for name in summary["suites"]}
    assert Path(beside["data_docs"]) == index.resolve()


@spark_test
def test_null_label_fails(spark, built, run, tmp_path):
    from pyspark.sql import functions as F

    _, warehouse = built
    first = spark.read.orc(str(warehouse / f"{SCHEMA}.db" / "stg_impressions")).first()[
        "impression_id"
    ]
    copy = corrupt_copy(
        spark,
        warehouse,
        tmp_path / "wh",
        "stg_impressions",
        lambda df: df.withColumn(
            "label", F.when(F.col("impression_id") == first, F.lit(None)).otherwise(F.col("label"))
        ),
    )
    code, summary = run(copy, "--suite", "stg_impressions")
    assert code == 1
    assert ("stg_impressions", "expect_column_values_to_not_be_null(label)") in failing(summary)
    beside = json.loads((copy / f"{SCHEMA}.db" / "_data_quality.json").read_text())
    assert beside["success"] is False and beside["suites"] == {"stg_impressions": False}


@spark_test
def test_ctr_above_one_fails(spark, built, run, tmp_path):
    from pyspark.sql import functions as F

    _, warehouse = built
    copy = corrupt_copy(
        spark,
        warehouse,
        tmp_path / "wh",
        "user_features_daily",
        lambda df: df.withColumn(
            "u_ctr_cum", F.when(F.col("u_imp_cum") > 0, F.lit(1.5)).otherwise(F.col("u_ctr_cum"))
        ),
    )
    code, summary = run(copy, "--suite", "user_features_daily")
    assert code == 1
    assert ("user_features_daily", "expect_column_max_to_be_between(u_ctr_cum)") in failing(summary)


@spark_test
def test_duplicated_impression_id_fails(spark, built, run, tmp_path):
    _, warehouse = built
    copy = corrupt_copy(
        spark,
        warehouse,
        tmp_path / "wh",
        "stg_impressions",
        lambda df: df.unionByName(df.limit(1)),
    )
    code, summary = run(copy, "--suite", "stg_impressions")
    assert code == 1
    assert ("stg_impressions", "expect_column_values_to_be_unique(impression_id)") in failing(
        summary
    )


def _on_first_row(spark, warehouse: Path, column: str, value):
    """A transform setting `column` to `value` (a Column) on the table's first impression only."""
    from pyspark.sql import functions as F

    first = spark.read.orc(str(warehouse / f"{SCHEMA}.db" / "training_samples")).first()
    row = F.col("impression_id") == first["impression_id"]
    return lambda df: df.withColumn(column, F.when(row, value).otherwise(F.col(column)))


def _training_corruptions(spark, warehouse: Path):
    """Name -> (transform of training_samples, the failing expectation that names the corrupted
    column, how many rows it must count as unexpected)."""
    from pyspark.sql import functions as F

    table = spark.read.orc(str(warehouse / f"{SCHEMA}.db" / "training_samples"))
    with_history = table.where(F.col("u_imp_7d") > 0).count()
    return {
        "ctr_above_one": (
            lambda df: df.withColumn(
                "u_ctr_7d", F.when(F.col("u_imp_7d") > 0, F.lit(1.7)).otherwise(F.col("u_ctr_7d"))
            ),
            "expect_column_values_to_be_between(u_ctr_7d)",
            with_history,
        ),
        "negative_count": (
            _on_first_row(spark, warehouse, "i_imp_cum", F.lit(-3).cast("bigint")),
            "expect_column_values_to_be_between(i_imp_cum)",
            1,
        ),
        "null_label": (
            _on_first_row(spark, warehouse, "label", F.lit(None).cast("int")),
            "expect_column_values_to_not_be_null(label)",
            1,
        ),
        "duplicated_impression_id": (
            lambda df: df.unionByName(df.limit(1)),
            "expect_column_values_to_be_unique(impression_id)",
            2,  # the row and its copy
        ),
        "history_reaching_own_day": (
            _on_first_row(spark, warehouse, "i_last_hist_date", F.col("date")),
            "expect_column_pair_values_a_to_be_greater_than_b(date > i_last_hist_date)",
            1,
        ),
    }


@spark_test
@pytest.mark.parametrize(
    "corruption",
    ["ctr_above_one", "negative_count", "null_label", "duplicated_impression_id",
     "history_reaching_own_day"],
)  # fmt: skip
def test_corrupted_training_samples_fail(spark, built, run, tmp_path, corruption):
    """Each corruption in its own copy fails, and the report counts the affected rows (row by
    row, not min/max only)."""
    _, warehouse = built
    transform, expectation, rows = _training_corruptions(spark, warehouse)[corruption]
    copy = corrupt_copy(spark, warehouse, tmp_path / "wh", "training_samples", transform)
    code, summary = run(copy, "--suite", "training_samples")
    assert code == 1
    assert ("training_samples", expectation) in failing(summary)
    (entry,) = [
        e for e in summary["suites"]["training_samples"]["expectations"]
        if e["description"] == expectation
    ]  # fmt: skip
    assert rows > 0 and entry["observed"].startswith(f"{rows} unexpected"), entry["observed"]


@spark_test
def test_missing_partition_day_fails(built, run, tmp_path):
    _, warehouse = built
    copy = tmp_path / "wh"
    shutil.copytree(warehouse / f"{SCHEMA}.db", copy / f"{SCHEMA}.db")
    days = sorted((copy / f"{SCHEMA}.db" / "training_samples").glob("date=*"))
    shutil.rmtree(days[len(days) // 2])
    code, summary = run(copy, "--suite", "training_samples")
    assert code == 1
    assert (
        "training_samples",
        "expect_column_distinct_values_to_equal_set(date)",
    ) in failing(summary)


@spark_test
def test_missing_table_is_a_clear_failure(built, run, tmp_path, capsys):
    _, warehouse = built
    copy = tmp_path / "wh"
    shutil.copytree(
        warehouse / f"{SCHEMA}.db",
        copy / f"{SCHEMA}.db",
        ignore=shutil.ignore_patterns("item_features_daily"),
    )
    code, summary = run(copy, "--suite", "item_features_daily")
    assert code == 1
    assert summary["suites"]["item_features_daily"]["error"].startswith(
        "table item_features_daily not found"
    )
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert "table item_features_daily not found" in out.out


@spark_test
def test_malformed_share_above_threshold_fails(built, run):
    _, warehouse = built
    code, summary = run(warehouse, "--suite", "raw", "--max-malformed-rate", "0")
    assert code == 1
    assert ("raw", "expect_column_values_to_be_null(_corrupt_record)") in failing(summary)


@spark_test
def test_quarantined_share_above_threshold_fails(built, run):
    _, warehouse = built
    code, summary = run(
        warehouse, "--suite", "quarantine_impressions", "--max-malformed-rate", "0.001"
    )
    assert code == 1
    assert ("quarantine_impressions", "expect_table_row_count_to_be_between") in failing(summary)


@spark_test
def test_cluster_target_reads_location_root(built, run, monkeypatch):
    _, warehouse = built
    monkeypatch.setenv("CTR_LOCATION_ROOT", warehouse.as_uri())
    code, summary = run(warehouse, "--target", "cluster", "--suite", "user_item_history")
    assert code == 0, failing(summary)


# ------------------------------------------------------- raw logs in day folders, built for real


def _day_folder_logs(root: Path, bad_rate: float) -> tuple[Path, dict]:
    """Generated logs moved into `date=YYYY-MM-DD/` folders, the first part gzipped, as the
    README's daily workflow lays them out; returns the raw path and the generator's manifest."""
    raw = root / "raw"
    subprocess.run(
        [sys.executable, "-m", "synthetic", "generate", "--rows", "6000", "--days", "4",
         "--seed", "3", "--bad-rate", str(bad_rate), "--out", str(raw), "--quiet"],
        cwd=ROOT, check=True,
    )  # fmt: skip
    manifest = json.loads((raw / "manifest.json").read_text())
    for n, part in enumerate(sorted(raw.glob("part-*.csv"))):
        day = raw / f"date=2024-03-0{n + 1}"
        day.mkdir()
        if n == 0:
            with open(part, "rb") as src, gzip.open(day / f"{part.name}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            part.unlink()
        else:
            part.rename(day / part.name)
    assert not list(raw.glob("*.csv")) and list(raw.glob("date=*/*.csv.gz"))
    return raw, manifest


def _observed(summary: dict, suite: str, expectation: str) -> str:
    (entry,) = [
        e for e in summary["suites"][suite]["expectations"] if e["description"] == expectation
    ]
    return entry["observed"]


def _validate_build(
    raw: Path, warehouse: Path, schema: str, monkeypatch, report: Path, *args: str
) -> tuple[int, dict]:
    monkeypatch.setenv("CTR_RAW_PATH", str(raw))
    monkeypatch.setenv("CTR_WAREHOUSE_DIR", str(warehouse))
    monkeypatch.setenv("CTR_SCHEMA", schema)
    code = main(["validate", "--report-dir", str(report), *args])
    return code, json.loads((report / "summary.json").read_text())


@spark_test
def test_clean_day_folders_validate(dbt_build, spark_warehouse_dir, monkeypatch, tmp_path):
    """Day folders with a .csv.gz part and no malformed record: the build stages every record,
    validation passes, the raw suite counts every record and the empty quarantine is 0 rows."""
    raw, manifest = _day_folder_logs(tmp_path, bad_rate=0.0)
    build = dbt_build(raw, "m2ctr_gx_days")
    assert build.success, build.failures()
    code, summary = _validate_build(
        raw, spark_warehouse_dir, "m2ctr_gx_days", monkeypatch, tmp_path / "report"
    )
    assert failing(summary) == set()
    assert code == 0
    count = "expect_table_row_count_to_be_between"
    assert _observed(summary, "raw", count) == str(manifest["records"]) == "6000"
    assert _observed(summary, "stg_impressions", count) == "6000"
    assert _observed(summary, "quarantine_impressions", count) == "0"


@pytest.fixture(scope="module")
def malformed_days(dbt_build, tmp_path_factory):
    """(raw path, manifest, schema) of a build of day folders with malformed records."""
    raw, manifest = _day_folder_logs(tmp_path_factory.mktemp("gx-malformed"), bad_rate=0.03)
    build = dbt_build(raw, "m2ctr_gx_bad")
    assert build.success, build.failures()
    return raw, manifest, "m2ctr_gx_bad"


@spark_test
def test_malformed_day_folders_are_quarantined_and_pass(
    malformed_days, spark_warehouse_dir, monkeypatch, tmp_path
):
    raw, manifest, schema = malformed_days
    bad = manifest["bad"]["total"]
    assert bad > 0
    code, summary = _validate_build(raw, spark_warehouse_dir, schema, monkeypatch, tmp_path / "r")
    assert failing(summary) == set()
    assert code == 0
    count = "expect_table_row_count_to_be_between"
    assert _observed(summary, "raw", count) == str(manifest["records"])
    assert _observed(summary, "quarantine_impressions", count) == str(bad)
    assert _observed(summary, "stg_impressions", count) == str(manifest["clean"])
    # Passing with some malformed records: counted exactly, with examples of them.
    kinds = manifest["bad"]["by_kind"]
    corrupt = _observed(summary, "raw", "expect_column_values_to_be_null(_corrupt_record)")
    assert corrupt.startswith(f"{kinds['too_few_fields'] + kinds['too_many_fields']} unexpected")
    assert " e.g. " in corrupt


@spark_test
def test_each_suite_costs_at_most_three_spark_jobs(
    spark, malformed_days, spark_warehouse_dir, monkeypatch, tmp_path
):
    """One pass per table: its aggregation, a uniqueness grouping, the reference values it needs
    from another table (validated alone), even where `mostly` lets unexpected values pass."""
    raw, _, schema = malformed_days
    tracker = spark.sparkContext.statusTracker()
    jobs = {}
    for name in SUITE_NAMES:
        before = max(tracker.getJobIdsForGroup(None), default=-1)
        code, _ = _validate_build(
            raw, spark_warehouse_dir, schema, monkeypatch, tmp_path / name, "--suite", name
        )
        assert code == 0
        jobs[name] = max(tracker.getJobIdsForGroup(None), default=-1) - before
    assert max(jobs.values()) <= 3, jobs


@spark_test
def test_table_deleted_after_the_build_fails_naming_it(
    malformed_days, spark_warehouse_dir, monkeypatch, tmp_path, capsys
):
    raw, _, schema = malformed_days
    copy = tmp_path / "wh"
    shutil.copytree(
        spark_warehouse_dir / f"{schema}.db",
        copy / f"{schema}.db",
        ignore=shutil.ignore_patterns("user_item_history"),
    )
    code, summary = _validate_build(raw, copy, schema, monkeypatch, tmp_path / "r")
    assert code == 1
    assert [n for n, s in summary["suites"].items() if not s["success"]] == ["user_item_history"]
    error = summary["suites"]["user_item_history"]["error"]
    assert error.startswith("table user_item_history not found") and "make features" in error
    out = capsys.readouterr()
    assert "data quality FAILED: user_item_history" in out.err


def test_every_suite_has_a_builder_in_run_order():
    from expectations.suites import SUITES

    assert list(SUITES) == SUITE_NAMES


def test_training_suite_guards_every_feature_column():
    """Type and value rules on every feature of the trainer's table, ranges row by row."""
    from expectations import suites
    from m2ctr import schema

    suite = suites.training_samples_suite(list(suites.TRAINING_REQUIRED), [0], (0.0, 1.0), 0.5)
    rules: dict[str, set[str]] = {}
    for e in suite.expectations:
        kw = e.configuration.kwargs
        for column in (kw.get("column"), kw.get("column_B")):
            rules.setdefault(column, set()).add(e.expectation_type)
    typed = {"expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type"}
    for column in (*schema.HISTORY_FEATURES, *schema.LAST_HIST_DATES, *schema.DEEP_FEATURES,
                   *schema.TEXT_COLUMNS):  # fmt: skip
        assert rules.get(column, set()) & typed, f"{column} has no type expectation"
    for column in (*schema.COUNT_COLUMNS, *schema.DAYS_COLUMNS, *schema.CTR_COLUMNS):
        assert "expect_column_values_to_be_between" in rules[column], column
    for column in schema.FLAG_COLUMNS:
        assert "expect_column_values_to_be_in_set" in rules[column], column
    for clicks, _ in schema.clicks_impressions_pairs(schema.HISTORY_FEATURES):
        assert "expect_column_pair_values_a_to_be_greater_than_b" in rules[clicks], clicks
    for column in schema.LAST_HIST_DATES:
        assert "expect_column_pair_values_a_to_be_greater_than_b" in rules[column], column
    not_null = "expect_column_proportion_of_non_null_values_to_be_between"
    for column in (*schema.HISTORY_FEATURES, *schema.DEEP_FEATURES, *schema.TEXT_COLUMNS):
        assert not_null in rules[column], column


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "--max-malformed-rate", "2"],
        ["validate", "--suite", "no_such_suite"],
        ["validate", "--target", "moon"],
        ["validate", "--label-rate-min", "0.6", "--label-rate-max", "0.5"],
    ],
)
def test_bad_arguments_exit_2(args):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2


def test_cluster_target_needs_location_root(monkeypatch):
    monkeypatch.delenv("CTR_LOCATION_ROOT", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--target", "cluster"])
    assert exc.value.code == 2


BASE_COLUMNS = list(RAW_REQUIRED)


def _write_csv(path: Path, header: list[str] | None, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def _record(user: str, log_time: str, n_deep: int) -> list[str]:
    return [user, "i1", log_time, "1", "a,b", "", "", "tea", 'Tea, "green"\nleaf', "2"] + [
        "0.5"
    ] * n_deep


def _validate_raw(raw: Path, monkeypatch, tmp_path) -> tuple[int, dict]:
    monkeypatch.setenv("CTR_RAW_PATH", str(raw))
    code = main(["validate", "--suite", "raw", "--report-dir", str(tmp_path / "report")])
    return code, json.loads((tmp_path / "report" / "summary.json").read_text())


@spark_test
def test_raw_files_are_read_by_their_own_layout(spark, monkeypatch, tmp_path):
    """A header naming a subset of deep features, in any order, next to headerless parts."""
    raw = tmp_path / "raw"
    raw.mkdir()
    header = [*BASE_COLUMNS, "deep_features_5", "deep_features_0"]
    _write_csv(raw / "a.csv", header, [_record(f"u{k}", "2024/3/1 9:05", 2) for k in range(20)])
    _write_csv(
        raw / "b.csv", None, [_record(f"v{k}", "2024-03-02 10:00:00", 27) for k in range(20)]
    )
    (raw / "notes.txt").write_text("not a part\n")
    code, summary = _validate_raw(raw, monkeypatch, tmp_path)
    assert failing(summary) == set()
    assert code == 0
    assert {e["batch"] for e in summary["suites"]["raw"]["expectations"]} == {
        "raw[a.csv]",
        "raw[b.csv]",
    }


@spark_test
def test_raw_file_without_a_required_column_fails(spark, monkeypatch, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    header = [c for c in BASE_COLUMNS if c != "scene"]
    _write_csv(raw / "a.csv", header, [_record("u1", "2024/3/1 9:05", 0)[:-1] for _ in range(5)])
    code, summary = _validate_raw(raw, monkeypatch, tmp_path)
    assert code == 1
    assert ("raw", "expect_table_columns_to_match_set") in failing(summary)


@pytest.mark.slow  # starts a Spark session of its own (~15 s)
def test_a_new_session_reads_files_and_times_as_the_build(tmp_path):
    """A validation run outside a Spark application starts its session with the local profile's
    settings (profiles.yml), CTR_* overrides included."""
    from expectations.sources import BUILD_SETTINGS
    from m2ctr.profile import local_spark_settings

    probe = (
        "import json; from expectations.settings import Settings; "
        "from expectations.sources import BUILD_SETTINGS, spark_session; "
        f"spark = spark_session(Settings(warehouse_dir={str(tmp_path)!r})); "
        "print(json.dumps({k: spark.conf.get(k) for k in BUILD_SETTINGS})); spark.stop()"
    )
    env = {**os.environ, "CTR_SPARK_DRIVER_MEMORY": "1200m"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()[-1]
    expected = {**local_spark_settings(BUILD_SETTINGS), "spark.driver.memory": "1200m"}
    assert json.loads(out) == expected
