"""Run the selected suites against a built warehouse and collect the report.

Reading is `sources`, what to check is `suites`, what is left behind is `report`; this module
puts them in order: each suite's table is read once, its suite built, validated batch by batch,
and the table released as soon as no later suite reads it. Data Docs are rendered once at the end.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from expectations import onepass, report
from expectations.references import References
from expectations.report import format_table, write_result_beside, write_summary
from expectations.settings import Settings
from expectations.sources import Sources, TableMissing, spark_session
from expectations.suites import SUITES

__all__ = ["Settings", "format_table", "validate", "write_result_beside", "write_summary"]


def validate(settings: Settings) -> dict:
    """Run the selected suites; return the JSON summary (the caller writes it to the report dir)."""
    docs_dir = Path(settings.report_dir) / "data_docs"
    # Pages of an earlier run would otherwise stay listed beside this one.
    shutil.rmtree(docs_dir, ignore_errors=True)
    docs_dir.mkdir(parents=True, exist_ok=True)

    context = report.docs_context(docs_dir.resolve())
    spark = spark_session(settings)
    sources = Sources(context, settings, spark)
    summary: dict = {
        "target": settings.target,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "suites": {},
    }
    rows: list[report.Row] = []
    with _validation_settings(spark):
        _run_suites(settings, context, sources, summary, rows)
    summary["data_docs"] = str(report.build_data_docs(context, docs_dir))
    summary["success"] = all(s["success"] for s in summary["suites"].values())
    summary["rows"] = rows
    return summary


def _run_suites(settings: Settings, context, sources: Sources, summary: dict, rows: list) -> None:
    refs = References(sources)
    try:
        for n, name in enumerate(
            tqdm(settings.suites, desc="suites", unit="suite", leave=False, disable=None)
        ):
            try:
                batches = sources.batches(name)  # a missing table fails before any reference
                suite, suite_params = SUITES[name].build(name, settings, refs)
            except TableMissing as exc:
                row, summary["suites"][name] = report.missing(name, str(exc))
                rows.append(row)
            else:
                summary["suites"][name] = _run(
                    context, name, suite, suite_params, batches, rows, refs
                )
            sources.release(sources.loaded() - _still_read(settings.suites[n + 1 :], refs))
    finally:
        sources.release(sources.loaded())


@contextmanager
def _validation_settings(spark):
    """Spark settings for the run, restored afterwards."""
    settings = {
        # GX samples a failing expectation's unexpected values with a LIMIT query, which Spark
        # runs as one job over 1 partition, then 4, 16, ... until it has enough rows: scan all
        # partitions at once instead.
        "spark.sql.limit.initialNumPartitions": str(2**30),
        # Adaptive execution runs each shuffle stage as a job of its own; a table's pass (its
        # aggregation and uniqueness groupings) is one job without it.
        "spark.sql.adaptive.enabled": "false",
        # A table's aggregation has hundreds of aggregates; Spark generates code for it only up
        # to this many fields (default 100), and interprets it beyond, about twice as slowly.
        "spark.sql.codegen.maxFields": "100000",
        # Fewer, larger scan tasks: a table's files (a few MB each, one per partition folder and
        # writer) are packed into splits of up to 256 MB, each file counted at its size. Every
        # task carries its pass's whole plan and opens its files' ORC footers; at 1M rows the
        # seven passes ran 278 tasks with the build's 32 MB splits and 92 with these. Spark still
        # cuts a table into at least one split per core.
        "spark.sql.files.maxPartitionBytes": "256m",
        "spark.sql.files.openCostInBytes": "1m",
    }
    saved = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def _run(context, name, suite, suite_params, batches, rows, refs: References) -> dict:
    """Validate every batch of one suite (a table is one batch; raw input one per file layout),
    each in one pass over its DataFrame (`onepass`), which also computes the values
    later suites take from this table."""
    suite = context.suites.add(suite)
    entries, success = [], True
    for n, batch in enumerate(batches):
        validator = context.get_validator(
            batch_request=batch.definition.build_batch_request(batch_parameters=batch.parameters)
        )
        riders = refs.riders(name, batch.parameters["dataframe"].columns)
        result, ridden = onepass.validate(
            context, validator, suite, suite_params, batch.label, riders, batch.parsed_on_scan
        )
        refs.take(name, ridden if riders else None, last_batch=n == len(batches) - 1)
        success = success and bool(result.success)
        batch_rows, batch_entries = report.results(batch.label, result)
        rows += batch_rows
        entries += batch_entries
    return {
        "success": success,
        "parameters": report.jsonable(suite_params),
        "expectations": entries,
    }


def _still_read(later: list[str], refs: References) -> set[str]:
    """Tables the later suites read: their own, and those whose reference values are not known."""
    refs_needed = {t for name in later for t in SUITES[name].references if not refs.known(t)}
    return set(later) | refs_needed
