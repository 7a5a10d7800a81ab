"""Data-quality benchmark: wall time and Spark jobs of the validation of a warehouse build.

Runs the same `validate` as `python -m expectations validate` (all suites unless --suite), in
this process, after the SparkSession is up (its start is timed apart), and prints the figures:
seconds, expectations, Spark jobs. The load average is printed beside them: on a shared machine
it moves the seconds more than anything measured here.

    .venv/bin/python bench/quality.py --raw RAW_DIR --warehouse WAREHOUSE_DIR [--per-suite]
    .venv/bin/python bench/quality.py --rows 30000          # generate and dbt build first

--per-suite also times each suite alone: its Spark jobs are the jobs of one table (raw: of each
group of files of one layout).

To compare two checkouts, run this file with the other one first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # last, so that another checkout on PYTHONPATH is the one measured


def _build(rows: int, days: int, work: Path) -> tuple[Path, Path]:
    raw, warehouse = work / "raw", work / "warehouse"
    subprocess.run(
        [sys.executable, "-m", "synthetic", "generate", "--rows", str(rows), "--days", str(days),
         "--seed", "1", "--out", str(raw), "--quiet"],
        cwd=ROOT, check=True,
    )  # fmt: skip
    env = {**os.environ, "CTR_RAW_PATH": str(raw), "CTR_WAREHOUSE_DIR": str(warehouse)}
    dbt = Path(sys.executable).with_name("dbt")
    subprocess.run(
        [str(dbt), "build", "--profiles-dir", "..", "--quiet"],
        cwd=ROOT / "warehouse", env=env, check=True,
    )  # fmt: skip
    return raw, warehouse


def _jobs(spark) -> int:
    """Spark jobs started so far in this application (job ids count up from 0)."""
    return 1 + max(spark.sparkContext.statusTracker().getJobIdsForGroup(None), default=-1)


def _measure(settings, spark) -> tuple[float, int, int, bool]:
    from expectations.runner import validate

    jobs, start = _jobs(spark), time.perf_counter()
    summary = validate(settings)
    seconds = time.perf_counter() - start
    return seconds, len(summary["rows"]), _jobs(spark) - jobs, bool(summary["success"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, help="raw CSV directory of the build")
    parser.add_argument("--warehouse", type=Path, help="CTR_WAREHOUSE_DIR of the build")
    parser.add_argument("--schema", default="m2ctr", help="dbt schema (default: m2ctr)")
    parser.add_argument("--rows", type=int, help="generate this many rows and build them first")
    parser.add_argument("--days", type=int, default=14, help="days of generated logs (default 14)")
    parser.add_argument("--suite", action="append", help="only this suite; repeatable")
    parser.add_argument("--per-suite", action="store_true", help="also time each suite alone")
    args = parser.parse_args(argv)
    if args.rows is None and (args.raw is None or args.warehouse is None):
        parser.error("give --raw and --warehouse of a build, or --rows to build one")

    from expectations import SUITE_NAMES

    try:
        from expectations.settings import Settings
    except ImportError:  # a checkout from before the settings had their own module
        from expectations.runner import Settings
    try:
        from expectations.sources import spark_session
    except ImportError:  # a checkout from before the runner was split
        from expectations.runner import spark_session

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        raw, warehouse = (
            _build(args.rows, args.days, Path(tmp)) if args.rows else (args.raw, args.warehouse)
        )
        chosen = args.suite or SUITE_NAMES

        def settings(suites: list[str]) -> Settings:
            return Settings(
                warehouse_dir=str(warehouse), schema=args.schema, raw_path=str(raw),
                report_dir=str(Path(tmp) / "report"), suites=suites,
            )  # fmt: skip

        start = time.perf_counter()
        try:
            spark = spark_session(settings(chosen))
        except TypeError:  # a checkout from before the session opened the build's metastore
            spark = spark_session()
        print(f"spark session start: {time.perf_counter() - start:.1f} s")

        runs = [("all" if args.suite is None else "+".join(chosen), chosen)]
        if args.per_suite:
            runs += [(name, [name]) for name in chosen]
        print(
            f"{'suites':<24} {'seconds':>8} {'expectations':>13} {'spark jobs':>11}  result  load"
        )
        for label, suites in runs:
            load = os.getloadavg()[0]
            seconds, n, jobs, ok = _measure(settings(suites), spark)
            result = "pass" if ok else "FAIL"
            print(f"{label:<24} {seconds:8.1f} {n:13d} {jobs:11d}  {result:<6}  {load:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
