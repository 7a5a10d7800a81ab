"""The JVM's class-data archive (m2ctr/jvm.py): recorded by a real Spark JVM, and mapped by the next.

Each test starts JVMs of its own in subprocesses (the shared test session's JVM is already up).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from m2ctr import jvm

# A fresh local Spark JVM with the given Java options; it fails to start where the JVM refuses them.
START = textwrap.dedent(
    """
    import sys
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
             .config("spark.driver.extraJavaOptions", sys.argv[1]).getOrCreate())
    print(spark.range(5).count())
    spark.stop()
    """
)


def _start(options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", START, options],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,  # the caller asserts on the exit status
    )


def test_no_archive_no_options(tmp_path, monkeypatch):
    monkeypatch.setenv("CTR_JVM_ARCHIVE", str(tmp_path / "none.jsa"))
    assert jvm.java_options() == ""


@pytest.mark.slow
def test_archive_is_recorded_and_mapped_by_the_next_spark_jvm(tmp_path, monkeypatch):
    archive = tmp_path / "classes.jsa"
    monkeypatch.setenv("CTR_JVM_ARCHIVE", str(archive))

    assert jvm.make_archive() == archive
    assert archive.stat().st_size > 10 * 2**20  # Spark's classes, not an empty shell
    assert not list(tmp_path.glob(".classes.jsa.*"))  # no partial file left beside it
    options = jvm.java_options()
    assert f"-XX:SharedArchiveFile={archive}" in options

    # -Xshare:on makes the JVM fail at start unless it maps the archive for this classpath.
    mapped = _start(f"{options} -Xshare:on")
    assert mapped.returncode == 0, mapped.stderr[-2000:]
    assert mapped.stdout.strip().splitlines()[-1] == "5"

    # Not an archive at all: with -Xshare:on the JVM refuses it, so the check above can fail.
    archive.write_bytes(b"not a class-data archive")
    refused = _start(f"{jvm.java_options()} -Xshare:on")
    assert refused.returncode != 0
    # ... and with the options as given (sharing where it can), Spark still starts.
    started = _start(jvm.java_options())
    assert started.returncode == 0, started.stderr[-2000:]
