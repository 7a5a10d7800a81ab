"""Run the suites against a built warehouse through Great Expectations' Spark datasources.

local target:   `$CTR_WAREHOUSE_DIR/<schema>.db/<model>/` through a Spark filesystem datasource
                (directory ORC assets), raw CSV through directory CSV assets.
cluster target: `$CTR_LOCATION_ROOT/<schema>.db/<model>` (e.g. hdfs://...) through a Spark
                dataframe datasource, since the filesystem datasource only lists local paths.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.expectations.row_conditions import deserialize_row_condition
from tqdm import tqdm

from expectations import SUITE_NAMES, suites

SITE_NAME = "m2ctr"


class TableMissing(Exception):
    """A table (or the raw input) the suite needs is not there."""


@dataclass
class Settings:
    target: str = "local"
    warehouse_dir: str = "data/warehouse"
    schema: str = "m2ctr"
    location_root: str | None = None
    raw_path: str = "data/raw"
    report_dir: str = "reports/data_quality"
    suites: list[str] = field(default_factory=lambda: list(SUITE_NAMES))
    max_malformed_rate: float = 0.05
    label_rate_bounds: tuple[float, float] = (0.001, 0.5)
    min_text_rate: float = 0.5


@dataclass
class Row:
    suite: str
    expectation: str
    success: bool
    observed: str


def spark_session():
    """The active SparkSession if there is one (tests, notebooks, spark-submit), else a local one."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    session = (
        SparkSession.builder.appName("m2ctr-expectations")
        .config("spark.ui.enabled", "false")
        # The suite bar is the progress report; Spark's stage bars would garble the table.
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


class Sources:
    """Registers one GX data asset per table and hands out (batch definition, batch parameters)."""

    def __init__(self, context, settings: Settings, spark):
        self.context = context
        self.settings = settings
        self.spark = spark
        self._batches: dict[str, tuple[Any, dict | None]] = {}
        if settings.target == "local":
            self.base = Path(settings.warehouse_dir) / f"{settings.schema}.db"
            self.warehouse = None
        else:
            # dbt's cluster target stores a model at <location_root>/<schema>.db/<model>.
            self.base = f"{settings.location_root.rstrip('/')}/{settings.schema}.db"
            self.warehouse = context.data_sources.add_spark("warehouse")

    def table(self, model: str):
        if model not in self._batches:
            self._batches[model] = self._register_table(model)
        return self._batches[model]

    def _register_table(self, model: str):
        if self.settings.target == "local":
            path = self.base / model
            has_data = path.is_dir() and any(
                p.is_file() and not p.name.startswith((".", "_")) for p in path.rglob("*")
            )
            if not has_data:
                raise TableMissing(f"table {model} not found at {path}")
            if self.warehouse is None:
                self.warehouse = self.context.data_sources.add_spark_filesystem(
                    "warehouse", base_directory=self.base
                )
            asset = self.warehouse.add_directory_orc_asset(model, data_directory=model)
            return asset.add_batch_definition_whole_directory(model), None
        path = f"{self.base}/{model}"
        try:
            frame = self.spark.read.orc(path)
        except Exception as exc:  # AnalysisException: PATH_NOT_FOUND / unable to infer schema
            raise TableMissing(f"table {model} not readable at {path}: {_first_line(exc)}") from exc
        asset = self.warehouse.add_dataframe_asset(model)
        return asset.add_batch_definition_whole_dataframe(model), {"dataframe": frame}

    def raw(self) -> list[tuple[str, Any, dict | None]]:
        """(label, batch definition, batch parameters) per group of raw files of one layout."""
        if "raw" not in self._batches:
            self._batches["raw"] = self._register_raw()
        return self._batches["raw"]

    def _raw_layouts(self) -> list[tuple[list[str], bool, list]]:
        """Raw files grouped by layout: (column names, has header, Hadoop paths).

        Each file may or may not start with a header, and a header may name any subset of
        the deep features in any order, so a file's first line decides how it is read.
        Hadoop's FileSystem lists and opens local and HDFS paths alike.
        """
        jvm = self.spark._jvm
        root = jvm.org.apache.hadoop.fs.Path(self.settings.raw_path)
        fs = root.getFileSystem(self.spark._jsc.hadoopConfiguration())
        if not fs.exists(root):
            raise TableMissing(f"raw input not found at {self.settings.raw_path}")
        if fs.getFileStatus(root).isDirectory():
            paths = sorted(
                (
                    st.getPath()
                    for st in fs.listStatus(root)
                    if st.isFile() and st.getPath().getName().endswith(".csv")
                ),
                key=lambda p: p.getName(),
            )
        else:
            paths = [root]
        if not paths:
            raise TableMissing(f"raw input not found at {self.settings.raw_path} (no *.csv)")
        groups: dict[tuple[str, ...] | None, list] = {}
        for path in paths:
            stream = jvm.java.io.BufferedReader(
                jvm.java.io.InputStreamReader(fs.open(path), "UTF-8")
            )
            try:
                line = stream.readLine() or ""
            finally:
                stream.close()
            fields = [f.strip() for f in next(csv.reader([line.lstrip("\ufeff")]), [])]
            key = tuple(fields) if fields[:1] == ["user_id"] else None
            groups.setdefault(key, []).append(path)
        return [
            (list(key) if key else suites.RAW_COLUMNS, key is not None, files)
            for key, files in groups.items()
        ]

    def _register_raw(self):
        from pyspark.sql.types import StringType, StructField, StructType

        layouts = self._raw_layouts()
        batches = []
        for n, (columns, header, files) in enumerate(layouts):
            names = [f.getName() for f in files]
            label = (
                "raw"
                if len(layouts) == 1
                else f"raw[{names[0]}" + (f" +{len(names) - 1}]" if len(names) > 1 else "]")
            )
            # Everything as a string: the raw suite judges the text, the build types it.
            schema = StructType(
                [StructField(c, StringType()) for c in [*columns, suites.CORRUPT_RECORD]]
            )
            options = {
                "header": header,
                "spark_schema": schema,
                # Quoted fields may hold newlines; a quote inside one is doubled (RFC 4180).
                "multi_line": True,
                "escape": '"',
                # Spark keeps a record whose field count differs from the schema's here.
                "mode": "PERMISSIVE",
                "column_name_of_corrupt_record": suites.CORRUPT_RECORD,
            }
            if self.settings.target == "cluster":
                frame = self.spark.read.csv(
                    [str(f) for f in files],
                    schema=schema,
                    header=header,
                    multiLine=True,
                    escape='"',
                    mode="PERMISSIVE",
                    columnNameOfCorruptRecord=suites.CORRUPT_RECORD,
                )
                asset = self.context.data_sources.add_spark(f"raw-{n}").add_dataframe_asset("raw")
                batches.append(
                    (label, asset.add_batch_definition_whole_dataframe("raw"), {"dataframe": frame})
                )
                continue
            raw = Path(self.settings.raw_path).resolve()
            if raw.is_file():
                source = self.context.data_sources.add_spark_filesystem(
                    f"raw-{n}", base_directory=raw.parent
                )
                asset = source.add_csv_asset("raw", **options)
                batches.append((label, asset.add_batch_definition_path("raw", path=raw.name), None))
                continue
            source = self.context.data_sources.add_spark_filesystem(
                f"raw-{n}", base_directory=raw.parent
            )
            # A Hadoop glob: every *.csv when all parts share the layout, else this group's files.
            glob = "*.csv" if len(layouts) == 1 else "{" + ",".join(names) + "}"
            asset = source.add_directory_csv_asset(
                "raw", data_directory=raw.name, path_glob_filter=glob, **options
            )
            batches.append((label, asset.add_batch_definition_whole_directory("raw"), None))
        return batches

    def dataframe(self, name: str):
        """The Spark DataFrame GX loads for a table, for reference values other suites compare to."""
        definition, params = self.table(name)
        return _frame(definition, params)

    def raw_dataframes(self):
        return [_frame(definition, params) for _, definition, params in self.raw()]


def _frame(definition, params):
    return definition.get_batch(batch_parameters=params).data.dataframe


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _raw_date_range(sources: Sources) -> dict:
    from pyspark.sql import functions as F

    lows, highs = [], []
    for frame in sources.raw_dataframes():
        text = F.trim(F.col("log_time"))
        day = F.to_date(
            F.coalesce(
                F.try_to_timestamp(text, F.lit("yyyy-MM-dd HH:mm:ss")),
                F.try_to_timestamp(text, F.lit("yyyy/M/d H:mm")),
            )
        )
        row = frame.select(F.min(day).alias("lo"), F.max(day).alias("hi")).first()
        if row["lo"] is not None:
            lows.append(row["lo"])
            highs.append(row["hi"])
    if not lows:
        raise TableMissing("raw input has no parseable log_time")
    return {"raw_min_date": min(lows).isoformat(), "raw_max_date": max(highs).isoformat()}


def _stg_reference(sources: Sources) -> dict:
    from pyspark.errors import AnalysisException

    frame = sources.dataframe("stg_impressions")
    try:
        days = [r["date"] for r in frame.select("date").distinct().collect()]
        scenes = [r["scene"] for r in frame.select("scene").distinct().collect()]
        count = frame.count()
    except AnalysisException as exc:
        raise TableMissing(f"stg_impressions has no usable date/scene: {_first_line(exc)}") from exc
    return {
        "stg_impressions_row_count": count,
        "stg_impressions_dates": sorted(d.isoformat() for d in days if d is not None),
        "scenes": sorted(s for s in scenes if s in suites.SCENES),
    }


def _build_suite(name: str, settings: Settings, sources: Sources, params: dict):
    """The suite and its suite parameters; may raise TableMissing."""
    from pyspark.errors import AnalysisException

    if name == "raw":
        sources.raw()
        return suites.raw_suite(settings.max_malformed_rate), {}
    sources.table(name)  # raises TableMissing before any reference value is computed
    if name == "stg_impressions":
        try:
            if "raw_min_date" not in params:
                params.update(_raw_date_range(sources))
        except (TableMissing, AnalysisException):
            # Without (parseable) raw input the date-range check has nothing to compare to.
            return suites.stg_impressions_suite(with_raw_range=False), {}
        return suites.stg_impressions_suite(with_raw_range=True), {
            k: params[k] for k in ("raw_min_date", "raw_max_date")
        }
    if name == "quarantine_impressions":
        # The share of all rejected records together, beside the raw suite's per-defect shares.
        try:
            if "stg_impressions_row_count" not in params:
                params.update(_stg_reference(sources))
        except TableMissing:
            return suites.quarantine_impressions_suite(with_share=False), {}
        total = params["stg_impressions_row_count"] + sources.dataframe(name).count()
        return suites.quarantine_impressions_suite(with_share=True), {
            "max_quarantined_rows": int(settings.max_malformed_rate * total)
        }
    columns = sources.dataframe(name).columns
    if name in suites.FEATURE_TABLE_KEYS:
        return suites.feature_table_suite(name, columns), {}
    if "stg_impressions_row_count" not in params:
        try:
            params.update(_stg_reference(sources))
        except TableMissing as exc:
            raise TableMissing(f"{exc} (training_samples is compared to it)") from exc
    suite = suites.training_samples_suite(
        columns, params["scenes"], settings.label_rate_bounds, settings.min_text_rate
    )
    return suite, {k: params[k] for k in ("stg_impressions_row_count", "stg_impressions_dates")}


def _describe(config) -> str:
    kw = config.kwargs
    if "column_A" in kw:
        op = ">=" if kw.get("or_equal") else ">"
        target = f"{kw['column_A']} {op} {kw['column_B']}"
    elif "column_list" in kw:
        target = ", ".join(kw["column_list"])
    else:
        target = kw.get("column", "")
    condition = kw.get("row_condition")
    if condition:
        # Stored as a dict; its Condition object reads like `scene == 0`.
        target += f" | {deserialize_row_condition(condition)!r}"
    return f"{config.type}({target})" if target else config.type


def _short(value: Any, width: int = 70) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple, set)):
        text = json.dumps(
            sorted(map(str, value)) if isinstance(value, set) else list(value), default=str
        )
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _observed(result) -> str:
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return "error: " + _first_line(Exception(info.get("exception_message", "")))
    res = result.result or {}
    if "observed_value" in res:
        return _short(res["observed_value"])
    if "unexpected_count" in res:
        text = f"{res['unexpected_count']} unexpected ({res.get('unexpected_percent') or 0:.2f}%)"
        sample = res.get("partial_unexpected_list") or []
        if res["unexpected_count"] and sample:
            text += " e.g. " + _short(sample[:3], 40)
        return text
    return ""


def _jsonable(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _context(docs_dir: Path):
    """An in-memory context whose only Data Docs site is the report directory."""
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={
            SITE_NAME: {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
        # One tqdm bar over the suites instead of one per metric batch.
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def validate(settings: Settings) -> dict:
    """Run the selected suites; return the JSON summary (also written to the report dir)."""
    report_dir = Path(settings.report_dir)
    docs_dir = report_dir / "data_docs"
    # Pages of an earlier run would otherwise stay listed beside this one.
    shutil.rmtree(docs_dir, ignore_errors=True)
    docs_dir.mkdir(parents=True, exist_ok=True)

    spark = spark_session()
    context = _context(docs_dir.resolve())
    sources = Sources(context, settings, spark)
    params: dict = {}
    summary: dict = {
        "target": settings.target,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "suites": {},
    }
    rows: list[Row] = []
    for name in tqdm(settings.suites, desc="suites", unit="suite", leave=False, disable=None):
        try:
            suite, suite_params = _build_suite(name, settings, sources, params)
            batches = sources.raw() if name == "raw" else [(name, *sources.table(name))]
        except TableMissing as exc:
            rows.append(Row(name, "table_exists", False, str(exc)))
            summary["suites"][name] = {
                "success": False,
                "error": str(exc),
                "expectations": [
                    {"expectation": "table_exists", "success": False, "observed": str(exc)}
                ],
            }
            continue
        suite = context.suites.add(suite)
        entries, success = [], True
        # One validation per batch: every table is one batch; raw input is one per file layout.
        for n, (label, definition, batch_params) in enumerate(batches):
            validation = context.validation_definitions.add(
                gx.ValidationDefinition(name=f"{name}-{n}", data=definition, suite=suite)
            )
            checkpoint = context.checkpoints.add(
                gx.Checkpoint(
                    name=f"{name}-{n}",
                    validation_definitions=[validation],
                    actions=[
                        gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[SITE_NAME])
                    ],
                    result_format="SUMMARY",
                )
            )
            result = checkpoint.run(
                batch_parameters=batch_params, expectation_parameters=suite_params
            )
            success = success and bool(result.success)
            for run in result.run_results.values():
                for r in run.results:
                    row = Row(label, _describe(r.expectation_config), bool(r.success), _observed(r))
                    rows.append(row)
                    entries.append(
                        {
                            "batch": label,
                            "expectation": r.expectation_config.type,
                            "kwargs": _jsonable(
                                {
                                    k: v
                                    for k, v in r.expectation_config.kwargs.items()
                                    if k != "batch_id"
                                }
                            ),
                            "description": row.expectation,
                            "success": row.success,
                            "observed": row.observed,
                        }
                    )
        summary["suites"][name] = {
            "success": success,
            "parameters": _jsonable(suite_params),
            "expectations": entries,
        }

    index = docs_dir / "index.html"
    if not index.exists():
        # Nothing was validated (every table missing): still leave a page to open.
        context.build_data_docs(site_names=[SITE_NAME])
    summary["success"] = all(s["success"] for s in summary["suites"].values())
    summary["data_docs"] = str(index.resolve())
    summary["rows"] = rows
    return summary


def write_summary(summary: dict, report_dir: str) -> Path:
    path = Path(report_dir) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in summary.items() if k != "rows"}
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    return path


def format_table(rows: list[Row], show_all: bool) -> str:
    """Failures (every row with show_all) plus one count line per suite."""
    shown = [r for r in rows if show_all or not r.success]
    counts: dict[str, list[int]] = {}
    for r in rows:
        counts.setdefault(r.suite, [0, 0])[0 if r.success else 1] += 1
    lines = []
    if shown:
        w_suite = max(len("suite"), *(len(r.suite) for r in shown))
        w_exp = min(90, max(len("expectation"), *(len(r.expectation) for r in shown)))
        lines.append(f"{'':4}  {'suite':<{w_suite}}  {'expectation':<{w_exp}}  observed")
        for r in shown:
            status = "PASS" if r.success else "FAIL"
            lines.append(
                f"{status:4}  {r.suite:<{w_suite}}  {r.expectation:<{w_exp}}  {r.observed}"
            )
        lines.append("")
    for suite, (passed, failed) in counts.items():
        status = "PASS" if not failed else "FAIL"
        lines.append(f"{status:4}  {suite}: {passed} passed, {failed} failed")
    return "\n".join(lines)
