"""A class-data archive of the Spark JVM, so that each local Spark start maps its classes instead
of loading them.

Every `dbt build`, `expectations validate` and test module starts a JVM that loads and verifies
some twenty thousand classes from pyspark's jars (Spark, Hive's metastore client, DataNucleus,
Derby) before its first query. Java's application class-data sharing (AppCDS, JDK 13+) stores
them, parsed and verified, in one archive that later JVMs map from disk. The archive is made once
per environment (`make install` does it), by a JVM that starts Spark as the build does and runs
a small build-shaped workload; it holds the classes of that exact classpath and JDK. A JVM whose
jars or JDK differ from the archive's ignores it and starts as before, so a stale archive costs
nothing but the time it would have saved.

    python -m m2ctr.jvm archive     # write the archive (CTR_JVM_ARCHIVE, or the default path)
    python -m m2ctr.jvm options     # the Java options that use it ('' while there is none)

The local dbt target reads the options from CTR_JAVA_OPTIONS (the Makefile exports them); the
validation session and the tests' session ask `java_options()` here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

# Unified-logging tags silenced: a mismatched archive is skipped with a warning on every start.
_QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def archive_path() -> Path:
    """CTR_JVM_ARCHIVE, else spark-classes.jsa under this environment's share/m2ctr/."""
    given = os.environ.get("CTR_JVM_ARCHIVE")
    return Path(given) if given else Path(sys.prefix) / "share" / "m2ctr" / "spark-classes.jsa"


def java_options() -> str:
    """The JVM options that map the archive, or '' when there is none."""
    path = archive_path()
    return f"-XX:SharedArchiveFile={path} {_QUIET}" if path.is_file() else ""


# The workload the archive is recorded from: a session with the local dbt target's settings
# (profiles.yml, its warehouse and Derby metastore in a scratch directory), then CSV read with the
# build's options, typed ORC tables out, partitioned and overwritten, a join, a window and an
# aggregation; the classes these load are the ones every build loads.
_WORKLOAD = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path

    work, options = Path(sys.argv[1]), sys.argv[2]
    os.environ["CTR_WAREHOUSE_DIR"], os.environ["CTR_JAVA_OPTIONS"] = str(work), options
    from pyspark.sql import SparkSession

    from m2ctr.profile import local_spark_settings
    from m2ctr.schema import RAW_CSV_OPTIONS

    (work / "raw").mkdir()
    (work / "raw" / "part.csv").write_text(
        "user_id,item_id,label,log_time\\n"
        + "".join(f"u{i % 7},i{i % 5},{i % 2},2024-03-0{1 + i % 3} 10:00:00\\n" for i in range(60))
    )
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in local_spark_settings().items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    csv = ", ".join(f"{k} '{v}'" for k, v in {**RAW_CSV_OPTIONS, "header": "true"}.items())
    spark.sql("create schema if not exists warmup")
    spark.sql(f"create table warmup.raw using csv options (path '{work / 'raw'}', {csv})")
    spark.sql(
        "create table warmup.typed using orc partitioned by (date) as select user_id, item_id, "
        "cast(label as int) as label, to_timestamp(log_time) as log_ts, "
        "to_date(log_time) as date from warmup.raw"
    )
    spark.sql("create table warmup.latest like warmup.typed")
    spark.sql(
        "insert overwrite table warmup.latest partition (date) select * from warmup.typed "
        "where date = date'2024-03-01'"
    )
    spark.sql(
        "with daily as (select user_id, date, count(*) as n, sum(label) as clicks "
        "from warmup.typed group by user_id, date), "
        "running as (select *, sum(n) over (partition by user_id order by date "
        "rows between unbounded preceding and 1 preceding) as before from daily) "
        "select t.item_id, count(*), avg(r.before), max(t.log_ts) from warmup.typed t "
        "join running r on t.user_id = r.user_id and t.date = r.date group by t.item_id"
    ).collect()
    spark.sql("show table extended in warmup like '*'").collect()
    jvm = spark.sparkContext._gateway.proc
    spark.stop()
    # The JVM exits when its stdin closes, and writes the archive as it exits: wait for it.
    jvm.stdin.close()
    sys.exit(jvm.wait(timeout=600))
    """
)


def make_archive(path: Path | None = None) -> Path | None:
    """Record the archive at `path` (default `archive_path()`); None, and a message on stderr,
    when this JVM could not write one (the JDK lacks class-data sharing). The file appears
    whole or not at all: the JVM writes it at exit, beside its final place, then it is moved."""
    path = path or archive_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="m2ctr-jvm-") as work:
        done = subprocess.run(
            [sys.executable, "-c", _WORKLOAD, work, f"-XX:ArchiveClassesAtExit={partial}"],
            capture_output=True,
            text=True,
            check=False,  # a failure is reported below, and Spark starts as before
        )
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        tail = "\n".join((done.stderr or "").strip().splitlines()[-5:])
        print(f"m2ctr.jvm: no class-data archive written; Spark starts as before.\n{tail}",
              file=sys.stderr)  # fmt: skip
        return None
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m m2ctr.jvm", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "command",
        choices=("archive", "options"),
        help="archive: record the archive (CTR_JVM_ARCHIVE or the default path); "
        "options: print the Java options that map it ('' while there is none)",
    )
    args = parser.parse_args(argv)
    if args.command == "options":
        print(java_options())
        return 0
    made = make_archive()
    if made is not None:
        print(f"class-data archive: {made} ({made.stat().st_size / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
