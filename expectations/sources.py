"""Read the warehouse tables and the raw CSV through Great Expectations' Spark datasources.

local target:   `$CTR_WAREHOUSE_DIR/<schema>.db/<model>/` through a Spark filesystem datasource
                (directory ORC assets), raw CSV through (directory) CSV assets.
cluster target: `$CTR_LOCATION_ROOT/<schema>.db/<model>` (e.g. hdfs://...) and the raw CSV read
                with Spark, since the filesystem datasource only lists local paths.

Each table (each group of raw files) is read once per run and persisted; every suite and every
reference value then works on that one DataFrame, handed to GX as a batch of the `warehouse`
(`raw`) dataframe datasource, until `release` unpersists it.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m2ctr.schema import RAW_COLUMNS

# Spark's CSV reader puts a record whose field count differs from the schema here.
CORRUPT_RECORD = "_corrupt_record"
RAW = "raw"


class TableMissing(Exception):
    """A table (or the raw input) the suite needs is not there."""


@dataclass
class Batch:
    """One GX batch to validate: a label for the report, its definition and batch parameters."""

    label: str
    definition: Any
    parameters: dict


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
        # Every table is held in memory (spilling to disk) while its suite runs; as for the build.
        .config("spark.driver.memory", os.environ.get("CTR_SPARK_DRIVER_MEMORY", "4g"))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Sources:
    """Loads each table once, persisted, and hands out GX batches over it."""

    def __init__(self, context, settings, spark):
        self.context = context
        self.settings = settings
        self.spark = spark
        self._frames: dict[str, list[tuple[str, Any]]] = {}  # model -> [(label, DataFrame)]
        self._assets: dict[str, Any] = {}  # label -> batch definition over a persisted frame
        self._definitions: dict[str, Any] = {}  # batch definitions the files are read through
        if settings.target == "local":
            self.base = Path(settings.warehouse_dir) / f"{settings.schema}.db"
        else:
            # dbt's cluster target stores a model at <location_root>/<schema>.db/<model>.
            self.base = f"{settings.location_root.rstrip('/')}/{settings.schema}.db"
        self._files = None  # the filesystem datasource the local tables are read through
        # The DataFrames are persisted here, so GX need not persist them again.
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
            batches.append(Batch(label, self._assets[label], {"dataframe": frame}))
        return batches

    def frame(self, model: str):
        """A table's DataFrame: the persisted one while it is loaded, else read for one use
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
        """Unpersist the named tables (a later call reads them again)."""
        for name in list(names):
            for _, frame in self._frames.pop(name, []):
                frame.unpersist()

    # -- reading ------------------------------------------------------------------------------------

    def _load(self, name: str) -> list[tuple[str, Any]]:
        if name not in self._frames:
            self._frames[name] = [(label, frame.persist()) for label, frame in self._read(name)]
        return self._frames[name]

    def _read(self, name: str) -> list[tuple[str, Any]]:
        return self._read_raw() if name == RAW else [(name, self._read_table(name))]

    def _read_table(self, model: str):
        if self.settings.target == "local":
            path = self.base / model
            has_data = path.is_dir() and any(
                p.is_file() and not p.name.startswith((".", "_")) for p in path.rglob("*")
            )
            if not has_data:
                raise TableMissing(f"table {model} not found at {path}")
            return _frame(self._once(model, lambda: self._orc_definition(model)))
        path = f"{self.base}/{model}"
        try:
            return self.spark.read.orc(path)
        except Exception as exc:  # AnalysisException: PATH_NOT_FOUND / unable to infer schema
            raise TableMissing(f"table {model} not readable at {path}: {first_line(exc)}") from exc

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
            (list(key) if key else list(RAW_COLUMNS), key is not None, files)
            for key, files in groups.items()
        ]

    def _read_raw(self) -> list[tuple[str, Any]]:
        from pyspark.sql.types import StringType, StructField, StructType

        layouts = self._raw_layouts()
        frames = []
        for n, (columns, header, files) in enumerate(layouts):
            names = [f.getName() for f in files]
            label = (
                RAW
                if len(layouts) == 1
                else f"raw[{names[0]}" + (f" +{len(names) - 1}]" if len(names) > 1 else "]")
            )
            # Everything as a string: the raw suite judges the text, the build types it.
            schema = StructType([StructField(c, StringType()) for c in [*columns, CORRUPT_RECORD]])
            frames.append((label, self._read_csv(n, files, names, len(layouts), schema, header)))
        return frames

    def _read_csv(
        self, n: int, files: list, names: list[str], n_layouts: int, schema, header: bool
    ):
        """One group of raw files of one layout, as strings."""
        options = {
            "header": header,
            # Quoted fields may hold newlines; a quote inside one is doubled (RFC 4180).
            "multi_line": True,
            "escape": '"',
            # Spark keeps a record whose field count differs from the schema here.
            "mode": "PERMISSIVE",
            "column_name_of_corrupt_record": CORRUPT_RECORD,
        }
        if self.settings.target == "cluster":
            return self.spark.read.csv(
                [str(f) for f in files],
                schema=schema,
                header=header,
                multiLine=True,
                escape='"',
                mode="PERMISSIVE",
                columnNameOfCorruptRecord=CORRUPT_RECORD,
            )
        return _frame(
            self._once(
                f"raw-files-{n}", lambda: self._csv_definition(n, names, n_layouts, schema, options)
            )
        )

    def _csv_definition(self, n: int, names: list[str], n_layouts: int, schema, options: dict):
        raw = Path(self.settings.raw_path).resolve()
        source = self.context.data_sources.add_spark_filesystem(
            f"raw-files-{n}", base_directory=raw.parent, persist=False
        )
        if raw.is_file():
            asset = source.add_csv_asset(RAW, spark_schema=schema, **options)
            return asset.add_batch_definition_path(RAW, path=raw.name)
        # A Hadoop glob: every *.csv when all parts share the layout, else this group's files.
        glob = "*.csv" if n_layouts == 1 else "{" + ",".join(names) + "}"
        asset = source.add_directory_csv_asset(
            RAW, data_directory=raw.name, path_glob_filter=glob, spark_schema=schema, **options
        )
        return asset.add_batch_definition_whole_directory(RAW)


def _frame(definition):
    return definition.get_batch().data.dataframe
