"""Shared fixtures: one in-process SparkSession per test run and in-process `dbt build`s on it.

The SparkSession is configured like the `local` dbt target (profiles.yml) but with its warehouse
and Derby metastore in a temporary directory. `dbt build` runs in-process (dbtRunner), so the
dbt-spark `session` method reuses this SparkSession instead of starting a JVM per build; each build
gets its own schema (`<schema>.db/<model>` under the one warehouse directory), so builds of
different inputs live side by side.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WAREHOUSE_PROJECT = ROOT / "warehouse"


@dataclass
class Build:
    """A finished `dbt build`: its schema, where its tables live, and dbt's result."""

    schema: str
    warehouse_dir: Path
    success: bool
    result: object
    started_ns: int = 0  # wall clock (time.time_ns) when the build started

    def table_dir(self, model: str) -> Path:
        return self.warehouse_dir / f"{self.schema}.db" / model

    def failures(self) -> list[str]:
        """'<node>: <status> <message>' for every model or test that did not pass."""
        if self.result.result is None:
            return [repr(self.result.exception)]
        return [
            f"{r.node.name}: {r.status} {r.message}"
            for r in self.result.result
            if str(r.status) not in ("success", "pass")
        ]


@pytest.fixture(scope="session")
def spark_warehouse_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spark-warehouse")


@pytest.fixture(scope="session")
def spark(spark_warehouse_dir):
    """The in-process SparkSession (Hive catalog, Derby metastore under a temporary directory)."""
    from pyspark.sql import SparkSession

    from m2ctr.jvm import java_options

    wh = spark_warehouse_dir
    session = (
        SparkSession.builder.master("local[2]")
        .appName("m2ctr-tests")
        .enableHiveSupport()
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.warehouse.dir", str(wh))
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={wh}/metastore_db;create=true",
        )
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={wh} {java_options()}")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.legacy.timeParserPolicy", "CORRECTED")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def dbt_build(spark, spark_warehouse_dir, tmp_path_factory):
    """Returns build(raw_path, schema, *dbt_args, command='build') -> Build: a real in-process
    `dbt build` (unit tests aside unless selected), or another dbt command.

    dbt reads its settings from CTR_* environment variables (profiles.yml); they are set for the
    duration of one build and restored afterwards.
    """
    from dbt.cli.main import dbtRunner

    runs = tmp_path_factory.mktemp("dbt")

    def build(raw_path: Path, schema: str, *dbt_args: str, command: str = "build") -> Build:
        env = {
            "CTR_RAW_PATH": str(raw_path),
            "CTR_WAREHOUSE_DIR": str(spark_warehouse_dir),
            "CTR_SCHEMA": schema,
            "CTR_DBT_TARGET": "local",
            "CTR_SHUFFLE_PARTITIONS": "2",
            "CTR_DBT_THREADS": "4",
        }
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        started_ns = time.time_ns()
        try:
            result = dbtRunner().invoke(
                [
                    command,
                    "--project-dir",
                    str(WAREHOUSE_PROJECT),
                    "--profiles-dir",
                    str(ROOT),
                    "--target-path",
                    str(runs / schema / "target"),
                    "--log-path",
                    str(runs / schema / "logs"),
                    "--no-partial-parse",
                    "--quiet",
                    # dbt unit tests run on their own (test_warehouse.py), as in `make features`.
                    *(() if "--select" in dbt_args else ("--exclude-resource-type", "unit_test")),
                    *dbt_args,
                ]
            )
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return Build(schema, spark_warehouse_dir, bool(result.success), result, started_ns)

    return build


def pytest_terminal_summary(terminalreporter):
    """Point at the data-quality report that the clean-build validation test leaves behind."""
    report = ROOT / "reports" / "data_quality" / "data_docs" / "index.html"
    if report.exists():
        terminalreporter.write_line(f"data-quality report: {report}")
