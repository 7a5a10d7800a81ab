"""Read the warehouse tables and the raw CSV through Great Expectations' Spark datasources.

local target:   `$CTR_WAREHOUSE_DIR/<schema>.db/<model>/` through a Spark filesystem datasource
                (directory ORC assets), raw CSV through (directory) CSV assets.
cluster target: `$CTR_LOCATION_ROOT/<schema>.db/<model>` (e.g. hdfs://...) and the raw CSV read
                with Spark, since the filesystem datasource only lists local paths.

Each table (each group of raw files) is read once per run; every suite and every reference value
then works on that one DataFrame, handed to GX as a batch of the `warehouse` (`raw`) dataframe
datasource, until `release` drops it. Nothing is persisted up front: a suite scans a table once
for its aggregation (`onepass`) and once more for a uniqueness grouping, and each scan reads only
the columns it needs from ORC, which costs less than caching every column first; raw CSV is parsed
once, by its aggregation. Raw CSV is persisted only before a second scan (the sample of a failing
expectation): Spark answers a query on its corrupt-record column alone only from a cached parse.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m2ctr.jvm import java_options
from m2ctr.profile import local_spark_settings
from m2ctr.schema import LOG_TIME_FORMATS, RAW_COLUMNS, RAW_CSV_OPTIONS

# Spark's CSV reader puts a record whose field count differs from the schema here.
CORRUPT_RECORD = "_corrupt_record"
# The raw suite's log_time parsed the way the build parses it (named as in stg_impressions).
LOG_TS = "log_ts"
RAW = "raw"


class TableMissing(Exception):
    """A table (or the raw input) the suite needs is not there."""


@dataclass
class Batch:
    """One GX batch to validate: a label for the report, its definition and batch parameters."""

    label: str
    definition: Any
    parameters: dict
    # Parsed from text on every scan, persisted before a second one (raw CSV: see the module's
    # docstring).
    parsed_on_scan: bool = False


# The build's settings (profiles.yml, local target) that decide how the same files are read:
# table folders listed on the driver rather than by a Spark job per table; the driver's memory;
# times in UTC, unparseable ones null; no Spark UI or stage bars (the suite bar is the progress
# report).
BUILD_SETTINGS = (
    "spark.sql.sources.parallelPartitionDiscovery.threshold",
    "spark.driver.memory",
    "spark.sql.session.timeZone",
    "spark.sql.legacy.timeParserPolicy",
    "spark.ui.enabled",
    "spark.ui.showConsoleProgress",
)


def session_settings() -> dict[str, str]:
    """The settings of a local validation session: the build's (`BUILD_SETTINGS`, read from the
    local profile with its CTR_* overrides) and the validation's own."""
    return {
        **local_spark_settings(BUILD_SETTINGS),
        # The uniqueness groupings are small; the build sizes its shuffles for joins.
        "spark.sql.shuffle.partitions": "8",
    }


def spark_session(settings=None):
    """The active SparkSession if there is one (tests, notebooks, spark-submit), else a local one
    with `session_settings()`.

    A local one opens the build's metastore (`<warehouse>/metastore_db`, as profiles.yml does)
    when there is one: only it knows the columns of a table without rows, which has no files.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName("m2ctr-expectations")
    for key, value in session_settings().items():
        builder = builder.config(key, value)
    # The parallel collector: a validation is a batch job, and G1's concurrent threads and write
    # barriers cost CPU (the compiler's included) that a pause-tolerant job need not pay. The
    # build's JVM makes the same choice (profiles.yml).
    java = [java_options(), "-XX:+UseParallelGC"]
    home = Path(settings.warehouse_dir).resolve() if settings is not None else None
    if home is not None and settings.target == "local" and (home / "metastore_db").is_dir():
        builder = builder.enableHiveSupport().config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={home}/metastore_db;create=false",
        )
        java.append(f"-Dderby.system.home={home}")
    builder = builder.config("spark.driver.extraJavaOptions", " ".join(filter(None, java)))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Sources:
    """Loads each table once and hands out GX batches over it."""

    def __init__(self, context, settings, spark):
        self.context = context
        self.settings = settings
        self.spark = spark
        self._frames: dict[str, list[tuple[str, Any]]] = {}  # model -> [(label, DataFrame)]
        self._assets: dict[str, Any] = {}  # label -> batch definition over a loaded frame
        self._definitions: dict[str, Any] = {}  # batch definitions the files are read through
        if settings.target == "local":
            self.base = Path(settings.warehouse_dir) / f"{settings.schema}.db"
        else:
            # dbt's cluster target stores a model at <location_root>/<schema>.db/<model>.
            self.base = f"{settings.location_root.rstrip('/')}/{settings.schema}.db"
        self._files = None  # the filesystem datasource the local tables are read through
        # Not persisted by GX either (see the module's docstring).
        self._validated = {
            name: context.data_sources.add_spark(name, persist=False) for name in ("warehouse", RAW)
        }

    # -- what the suites validate -----------------------------------------------------------------

    def batches(self, name: str) -> list[Batch]:
        """The batches of a suite: one per table; raw input one per group of files of one layout."""
        source = self._validated[RAW if name == RAW else "warehouse"]
        batches = []
        for label, frame in self._load(name):
            if label not in self._assets:
                asset = source.add_dataframe_asset(label)
                self._assets[label] = asset.add_batch_definition_whole_dataframe(label)
            batches.append(
                Batch(label, self._assets[label], {"dataframe": frame}, parsed_on_scan=name == RAW)
            )
        return batches

    def frame(self, model: str):
        """A table's DataFrame: the loaded one while it is loaded, else read for one use
        (a reference value, which the caller keeps, is all that is wanted of it then)."""
        return self._frames_of(model)[0]

    def raw_frames(self) -> list:
        return self._frames_of(RAW)

    def _frames_of(self, name: str) -> list:
        frames = self._frames.get(name) or self._read(name)
        return [frame for _, frame in frames]

    def loaded(self) -> set[str]:
        return set(self._frames)

    def release(self, names) -> None:
        """Drop the named tables (a later call reads them again)."""
        for name in list(names):
            self._frames.pop(name, None)

    # -- reading ------------------------------------------------------------------------------------

    def _load(self, name: str) -> list[tuple[str, Any]]:
        if name not in self._frames:
            self._frames[name] = self._read(name)
        return self._frames[name]

    def _read(self, name: str) -> list[tuple[str, Any]]:
        return self._read_raw() if name == RAW else [(name, self._read_table(name))]

    def _read_table(self, model: str):
        """A built table; zero rows when it was built empty, `TableMissing` when never built."""
        path = f"{self.base}/{model}"
        files = self._data_files(path)
        if files is None:
            raise TableMissing(
                f"table {model} not found at {path}: not built, or deleted since "
                "(`make features` builds it)"
            )
        if not files:
            return self._empty(model, path)
        if self.settings.target == "local":
            return _frame(self._once(model, lambda: self._orc_definition(model)))
        try:
            return self.spark.read.orc(path)
        except Exception as exc:  # AnalysisException: unable to infer schema
            raise TableMissing(f"table {model} not readable at {path}: {first_line(exc)}") from exc

    def _data_files(self, path: str) -> list | None:
        """The data files of a table directory (hidden names skipped), None if there is none.

        dbt creates a table's directory when it builds it, and writes no file into it for a
        partitioned table without rows (quarantine_impressions of a clean build).
        """
        hadoop = self.spark._jvm.org.apache.hadoop.fs
        root = hadoop.Path(path)
        fs = root.getFileSystem(self.spark._jsc.hadoopConfiguration())
        if not fs.exists(root):
            return None
        files, folders = [], [root]
        while folders:
            for child in fs.listStatus(folders.pop()):
                if _hidden(child.getPath().getName()):
                    continue
                (folders if child.isDirectory() else files).append(child.getPath())
        return files

    def _empty(self, model: str, path: str):
        """A built table without rows: zero rows of its columns, as the metastore has them."""
        name = f"{self.settings.schema}.{model}"
        # Without Hive support the session's catalog is empty: then no table is known.
        if not self.spark.catalog.tableExists(name):
            raise TableMissing(
                f"table {model} at {path} has no rows and no metastore here knows its columns "
                f"({name}; locally the build's one is <CTR_WAREHOUSE_DIR>/metastore_db)"
            )
        return self.spark.createDataFrame([], self.spark.table(name).schema)

    def _once(self, key: str, make):
        """A GX batch definition, registered on first use (a table may be read again)."""
        if key not in self._definitions:
            self._definitions[key] = make()
        return self._definitions[key]

    def _orc_definition(self, model: str):
        if self._files is None:
            self._files = self.context.data_sources.add_spark_filesystem(
                "warehouse-files", base_directory=self.base, persist=False
            )
        asset = self._files.add_directory_orc_asset(model, data_directory=model)
        return asset.add_batch_definition_whole_directory(model)

    def _raw_files(self) -> tuple[Any, str, list]:
        """The raw files the build reads (macros/create_raw_source.sql), as Hadoop paths: every
        file below the raw path, recursively (flat or in `date=` folders), whose name matches
        the raw glob; hidden names are skipped as Spark skips them. Hadoop's FileSystem lists
        local and HDFS paths alike."""
        hadoop = self.spark._jvm.org.apache.hadoop.fs
        where = self.settings.raw_path
        root = hadoop.Path(where)
        fs = root.getFileSystem(self.spark._jsc.hadoopConfiguration())
        if not fs.exists(root):
            raise TableMissing(
                f"raw input not found at {where} (CTR_RAW_PATH; `make data` writes a sample there)"
            )
        found, folders = [], [fs.getFileStatus(root)]
        while folders:
            status = folders.pop()
            if status.isFile():
                found.append(status.getPath())
                continue
            for child in fs.listStatus(status.getPath()):
                if not _hidden(child.getPath().getName()):
                    folders.append(child)
        wanted = hadoop.GlobFilter(self.settings.raw_glob)
        paths = sorted((p for p in found if wanted.accept(p)), key=lambda p: p.toString())
        if not paths:
            raise TableMissing(
                f"raw input not found at {where} (no file below it matches {self.settings.raw_glob})"
            )
        return fs, fs.makeQualified(root).toString(), paths

    def _raw_layouts(self) -> tuple[list[tuple[list[str], bool, list]], str]:
        """Raw files grouped by layout: (column names, has header, Hadoop paths), and the
        qualified raw path.

        Each file may or may not start with a header, and a header may name any subset of
        the deep features in any order, so a file's first line decides how it is read (the
        build decides it the same way, record by record). Compressed parts are opened through
        their Hadoop codec, as Spark opens them.
        """
        jvm = self.spark._jvm
        fs, root, paths = self._raw_files()
        codecs = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
            self.spark._jsc.hadoopConfiguration()
        )
        groups: dict[tuple[str, ...] | None, list] = {}
        for path in paths:
            codec = codecs.getCodec(path)
            stream = fs.open(path)
            if codec is not None:
                stream = codec.createInputStream(stream)
            reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
            try:
                line = reader.readLine() or ""
            finally:
                reader.close()
            fields = [f.strip() for f in next(csv.reader([line.lstrip("\ufeff")]), [])]
            key = tuple(fields) if fields[:2] == ["user_id", "item_id"] else None
            groups.setdefault(key, []).append(path)
        return [
            (list(key) if key else list(RAW_COLUMNS), key is not None, files)
            for key, files in groups.items()
        ], root

    def _read_raw(self) -> list[tuple[str, Any]]:
        """One DataFrame per layout, every field a string, read with the build's CSV options,
        plus `log_ts`: log_time parsed with the build's formats (null when none matches)."""
        from pyspark.sql.types import StringType, StructField, StructType

        layouts, root = self._raw_layouts()
        frames = []
        for columns, header, files in layouts:
            names = [f.toString()[len(root) :].lstrip("/") or f.getName() for f in files]
            label = (
                RAW
                if len(layouts) == 1
                else f"raw[{names[0]}" + (f" +{len(names) - 1}]" if len(names) > 1 else "]")
            )
            # Everything as a string: the raw suite judges the text, the build types it.
            schema = StructType([StructField(c, StringType()) for c in [*columns, CORRUPT_RECORD]])
            frame = (
                self.spark.read.options(**RAW_CSV_OPTIONS)
                .options(header=str(header).lower(), columnNameOfCorruptRecord=CORRUPT_RECORD)
                .schema(schema)
                .csv([f.toString() for f in files])
            )
            if "log_time" in columns:
                frame = frame.withColumn(LOG_TS, parse_log_time(frame["log_time"]))
            frames.append((label, frame))
        return frames


def parse_log_time(column):
    """A raw log_time as a timestamp, as stg_raw_records parses it: the first of the formats
    (var log_time_formats) it matches, else null."""
    from pyspark.sql import functions as F

    text = F.trim(column)
    return F.coalesce(*(F.try_to_timestamp(text, F.lit(f)) for f in LOG_TIME_FORMATS))


def _hidden(name: str) -> bool:
    """Names Spark's file listing skips (InMemoryFileIndex.shouldFilterOutPathName)."""
    return (
        (name.startswith("_") and "=" not in name)
        or name.startswith(".")
        or name.endswith("._COPYING_")
    )


def _frame(definition):
    return definition.get_batch().data.dataframe
