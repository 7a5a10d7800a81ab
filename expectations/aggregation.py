"""A suite's metrics as Spark SQL: one aggregation over the table, one grouping per uniqueness
check, run as one Spark job (`Plan.run`), and how each metric Great Expectations asks for is read
from the result. What this module cannot write as SQL (`Plan.later`) is left to Great
Expectations; `expectations.onepass` decides what runs here and judges the expectations.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from great_expectations.expectations.metrics.column_aggregate_metrics.column_distinct_values import (
    _coerce_value_set_to_column_type,
)
from great_expectations.expectations.row_conditions import deserialize_row_condition

# Counts of unexpected rows computed here, by map metric: the condition a (non-null) value fails,
# as Spark SQL over the column's quoted name.
_MAP_CONDITIONS: dict[str, Callable] = {}


class _NotHere(Exception):
    """A metric this module does not compute (a value it cannot write as SQL): GX computes it."""


def _map(name: str):
    def register(fn):
        _MAP_CONDITIONS[name] = fn
        return fn

    return register


def _quote(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


def _literal(value) -> str:
    """A Python value as a Spark SQL literal of the type `F.lit` gives it."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)  # INT, BIGINT or DECIMAL by size, as Spark SQL reads it
    if isinstance(value, float):
        return f"{value!r}D" if math.isfinite(value) else f"CAST('{value}' AS DOUBLE)"
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return f"{value}BD"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP'{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE'{value.isoformat()}'"
    raise _NotHere(f"no SQL literal for {type(value).__name__}")


@_map("column_values.nonnull")
def _nonnull(col, kw):
    return f"{col} IS NULL"


@_map("column_values.null")
def _null(col, kw):
    return f"{col} IS NOT NULL"


@_map("column_values.in_set")
def _in_set(col, kw):
    values = list(kw["value_set"] or [])
    if not values:
        return f"{col} IS NOT NULL"
    return f"{col} IS NOT NULL AND NOT {col} IN ({', '.join(map(_literal, values))})"


def _between(value: str, kw) -> str:
    low, high = kw.get("min_value"), kw.get("max_value")
    ok = ["TRUE"]
    if low is not None:
        ok.append(f"{value} {'>' if kw.get('strict_min') else '>='} {_literal(low)}")
    if high is not None:
        ok.append(f"{value} {'<' if kw.get('strict_max') else '<='} {_literal(high)}")
    return " AND ".join(ok)


@_map("column_values.between")
def _values_between(col, kw):
    return f"{col} IS NOT NULL AND NOT ({_between(col, kw)})"


@_map("column_values.value_length.between")
def _lengths_between(col, kw):
    return f"{col} IS NOT NULL AND NOT ({_between(f'length({col})', kw)})"


def _and(*conditions: str) -> str:
    return " AND ".join(f"({c})" for c in conditions)


@dataclass
class Plan:
    """The aggregates of one pass (Spark SQL expressions, written as one query, since building
    hundreds of Column objects call by call through py4j costs more than Spark's pass over a
    small table) and how each needed metric is read from the result."""

    engine: Any
    frame: Any
    columns: list = field(default_factory=list)  # aggregate expressions, SQL
    readers: dict = field(default_factory=dict)  # metric id -> (row, groups) -> value
    groupings: list = field(default_factory=list)  # (filter, key columns), SQL
    riders: dict = field(default_factory=dict)  # name -> index of an aggregate asked for by name
    later: dict = field(default_factory=dict)  # metric id -> configuration left to GX

    def agg(self, expr: str) -> int:
        self.columns.append(expr)
        return len(self.columns) - 1

    def domain_filter(self, domain: dict) -> str | None:
        """The rows of a metric domain, as a SQL condition (None: not a domain handled here)."""
        keep = ["TRUE"]
        if domain.get("row_condition"):
            condition = domain["row_condition"]
            if domain.get("condition_parser") not in (None, "great_expectations"):
                return None
            if isinstance(condition, dict):
                condition = deserialize_row_condition(condition)
            clause = self.engine.condition_to_filter_clause(condition)
            if not isinstance(clause, str):
                return None
            keep.append(f"({clause})")
        ignore = domain.get("ignore_row_if")
        if "column_A" in domain:
            a, b = _quote(domain["column_A"]), _quote(domain["column_B"])
            if ignore == "both_values_are_missing":
                keep.append(f"({a} IS NOT NULL OR {b} IS NOT NULL)")
            elif ignore == "either_value_is_missing":
                keep += [f"{a} IS NOT NULL", f"{b} IS NOT NULL"]
            elif ignore not in (None, "neither"):
                return None
        elif "column_list" in domain:
            present = [f"{_quote(c)} IS NOT NULL" for c in domain["column_list"]]
            if ignore == "all_values_are_missing":
                keep.append("(" + " OR ".join(present) + ")")
            elif ignore == "any_value_is_missing":
                keep += present
            elif ignore not in (None, "never"):
                return None
        return " AND ".join(keep)

    def add(self, metric) -> None:
        """Plan one metric configuration: here, or left to Great Expectations."""
        try:
            reader = self._reader(metric)
        except _NotHere:
            reader = None
        if reader is None:
            self.later[metric.id] = metric
        else:
            self.readers[metric.id] = reader

    def _reader(self, metric):
        name, domain, kw = (
            metric.metric_name,
            metric.metric_domain_kwargs,
            metric.metric_value_kwargs,
        )
        keep = self.domain_filter(domain)
        if keep is None:
            return None
        column = _quote(domain["column"]) if "column" in domain else None

        def count(condition: str) -> int:
            return self.agg(f"count(CASE WHEN {_and(keep, condition)} THEN 1 END)")

        def value(i):
            return lambda row, groups: row[i]

        if name == "table.row_count" or name.endswith(".filtered_row_count"):
            return value(count("TRUE"))
        if (
            name.endswith(".unexpected_count")
            and name[: -len(".unexpected_count")] in _MAP_CONDITIONS
        ):
            return value(count(_MAP_CONDITIONS[name[: -len(".unexpected_count")]](column, kw)))
        if name == "column_pair_values.a_greater_than_b.unexpected_count":
            a, b = _quote(domain["column_A"]), _quote(domain["column_B"])
            # As GX: a row where either side is null compares to null and is not counted.
            return value(count(f"NOT ({a} {'>=' if kw.get('or_equal') else '>'} {b})"))
        if name in (
            "column_values.unique.unexpected_count",
            "compound_columns.unique.unexpected_count",
        ):
            keys = [domain["column"]] if "column" in domain else list(domain["column_list"])
            if "column" in domain:
                keep = _and(keep, f"{column} IS NOT NULL")
            self.groupings.append((keep, [_quote(k) for k in keys]))
            n = len(self.groupings) - 1
            return lambda row, groups: groups[n]
        if name in ("column.min", "column.max", "column.mean") and not kw:
            fn = {"column.min": "min", "column.max": "max", "column.mean": "avg"}[name]
            return value(self.agg(f"{fn}(CASE WHEN {keep} THEN {column} END)"))
        if name == "column.non_null_proportion":
            rows, nonnull = count("TRUE"), count(f"{column} IS NOT NULL")
            return lambda row, groups: row[nonnull] / row[rows] if row[rows] else 0
        if name.startswith("column.distinct_values.") and name.split(".", 2)[2] in (
            "not_in_set", "not_in_set.count", "missing_from_column", "missing_from_column.count",
        ):  # fmt: skip
            i = self.agg(f"collect_set(CASE WHEN {keep} THEN {column} END)")
            return self._distinct(name, kw, i)
        return None

    def examples(self, metric) -> bool:
        """Plan the examples of a `mostly` expectation's unexpected values (its
        `*.unexpected_values` metric): the least and the greatest, or one null where the unexpected
        values are the nulls. False where its condition is not one computed here."""
        name, domain = metric.metric_name, metric.metric_domain_kwargs
        condition = _MAP_CONDITIONS.get(name[: -len(".unexpected_values")])
        keep = self.domain_filter(domain)
        if condition is None or keep is None or "column" not in domain:
            return False
        column = _quote(domain["column"])
        try:
            unexpected = _and(keep, condition(column, metric.metric_value_kwargs))
        except _NotHere:
            return False
        unexpected = f"CASE WHEN {unexpected} THEN {column} END"
        least, greatest = self.agg(f"min({unexpected})"), self.agg(f"max({unexpected})")

        def read(row, groups):
            values = [row[least]] if row[least] is not None else []
            if row[greatest] is not None and row[greatest] != row[least]:
                values.append(row[greatest])
            return values or [None]

        self.readers[metric.id] = read
        return True

    @staticmethod
    def _distinct(name: str, kw: dict, i: int):
        def read(row, groups):
            present = set(row[i])
            expected = _coerce_value_set_to_column_type(present, list(kw.get("value_set") or []))
            values = sorted(
                present - expected if "not_in_set" in name else expected - present, key=str
            )
            if name.endswith(".count"):
                return len(values)
            return values[: kw["limit"]] if kw.get("limit") else values

        return read

    def run(self, split: bool) -> tuple[dict, dict]:
        """The values of every metric planned here, and of the riders, in one Spark job: the
        aggregation and one grouping per uniqueness check, as branches of one union, written as
        one SQL query over the batch (a temporary view for the length of the call).

        `split`: aggregates of a variable-width value (distinct-value sets, string examples) in
        an aggregation of their own beside the others (one more scan of their few columns), so
        that the many counts are aggregated by generated code, which Spark gives only to
        aggregates of fixed-width values. Not for a source parsed on every scan (raw CSV)."""
        spark = self.frame.sparkSession
        view = f"onepass_{uuid.uuid4().hex}"
        self.frame.createOrReplaceTempView(view)
        try:
            aggregations = self._aggregations(split, spark, view) if self.columns else []
            queries = [self._select(part, view) for part in aggregations]
            for keep, keys in self.groupings:
                queries.append(
                    f"SELECT sum(n) AS duplicates FROM (SELECT count(*) AS n FROM {view} "
                    f"WHERE {keep} GROUP BY {', '.join(keys)} HAVING count(*) > 1)"
                )
            results = _collect_as_one(spark, queries)
        finally:
            spark.catalog.dropTempView(view)
        row = [None] * len(self.columns)
        for part, result in zip(aggregations, results, strict=False):
            for i, value in zip(part, result, strict=True):
                row[i] = value
        groups = [int(r[0] or 0) for r in results[len(aggregations) :]]
        metrics = {mid: read(row, groups) for mid, read in self.readers.items()}
        return metrics, {name: row[i] for name, i in self.riders.items()}

    def _select(self, part: list[int], view: str) -> str:
        return f"SELECT {', '.join(f'{self.columns[i]} AS m{i}' for i in part)} FROM {view}"

    def _aggregations(self, split: bool, spark, view: str) -> list[list[int]]:
        """The aggregate columns (indices) of each aggregation: one, or fixed-width and other."""
        everything = list(range(len(self.columns)))
        if not split:
            return [everything]
        types = [f.dataType for f in spark.sql(self._select(everything, view)).schema.fields]
        fixed = [i for i in everything if _fixed_width(types[i])]
        other = [i for i in everything if not _fixed_width(types[i])]
        return [part for part in (fixed, other) if part]


def _fixed_width(data_type) -> bool:
    from pyspark.sql import types as T

    if isinstance(data_type, T.DecimalType):
        return data_type.precision <= 18
    fixed = (T.NumericType, T.BooleanType, T.DateType, T.TimestampType, T.TimestampNTZType)
    return isinstance(data_type, fixed)


def _collect_as_one(spark, queries: list[str]) -> list:
    """The one row of each single-row query, computed by one Spark job (a union of them: branch
    n's row packed in column b<n>, the other branches' columns null)."""
    if len(queries) <= 1:
        return [spark.sql(query).first() for query in queries]
    branches = [
        f"SELECT {n} AS branch, "
        + ", ".join(f"{'struct(*)' if k == n else 'NULL'} AS b{k}" for k in range(len(queries)))
        + f" FROM ({query})"
        for n, query in enumerate(queries)
    ]
    rows = {row["branch"]: row[f"b{row['branch']}"] for row in
            spark.sql(" UNION ALL ".join(branches)).collect()}  # fmt: skip
    return [rows[n] for n in range(len(queries))]
