"""One pass per table: every metric a suite needs, computed in one Spark aggregation.

Great Expectations bundles a round of aggregate metrics that share a domain into one Spark job,
but a suite over a wide table has many domains (a row condition, the rows a column pair keeps)
and many rounds, and every row-by-row expectation samples its unexpected values with a job of
its own: 115 jobs for training_samples even without the samples. Here each expectation still
declares what it needs (`get_validation_dependencies`) and still judges it (`metrics_validate`,
the same code Great Expectations runs), but the metrics in between are computed by this module:

- one aggregation over the persisted table: row counts, null / set / range / length / pair
  counts (each with its domain's filter folded into the count), min, max, mean, distinct values,
  and the values other suites take from this table (`riders`, see references.py);
- one grouping job when the suite checks uniqueness (the rows whose key occurs more than once);
- Great Expectations itself for anything else (schema metrics cost no job), and for the samples
  of unexpected values, which only a failing expectation needs.

The result is an ordinary suite validation result, stored for Data Docs like a checkpoint's.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.expectations.metrics.column_aggregate_metrics.column_distinct_values import (
    _coerce_value_set_to_column_type,
)
from great_expectations.expectations.row_conditions import deserialize_row_condition
from great_expectations.util import convert_to_json_serializable

# Counts of unexpected rows computed here, by map metric: the condition a (non-null) value fails.
_MAP_CONDITIONS: dict[str, Callable] = {}

# No unexpected-value samples in the result: a passing expectation has none to show, a failing
# one gets its sample from Great Expectations afterwards.
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 20}


def _map(name: str):
    def register(fn):
        _MAP_CONDITIONS[name] = fn
        return fn

    return register


@_map("column_values.nonnull")
def _nonnull(col, kw):
    return col.isNull()


@_map("column_values.null")
def _null(col, kw):
    return col.isNotNull()


@_map("column_values.in_set")
def _in_set(col, kw):
    values = list(kw["value_set"] or [])
    return col.isNotNull() & ~col.isin(values) if values else col.isNotNull()


def _between(value, kw):
    from pyspark.sql import functions as F

    low, high = kw.get("min_value"), kw.get("max_value")
    ok = F.lit(True)
    if low is not None:
        ok = ok & ((value > F.lit(low)) if kw.get("strict_min") else (value >= F.lit(low)))
    if high is not None:
        ok = ok & ((value < F.lit(high)) if kw.get("strict_max") else (value <= F.lit(high)))
    return ok


@_map("column_values.between")
def _values_between(col, kw):
    return col.isNotNull() & ~_between(col, kw)


@_map("column_values.value_length.between")
def _lengths_between(col, kw):
    from pyspark.sql import functions as F

    return col.isNotNull() & ~_between(F.length(col), kw)


@dataclass
class _Plan:
    """The aggregate columns of one pass and how each needed metric is read from the result."""

    engine: Any
    frame: Any
    columns: list = field(default_factory=list)
    readers: dict = field(default_factory=dict)  # metric id -> (row, groups) -> value
    groupings: list = field(default_factory=list)  # (filter, key columns)
    riders: dict = field(default_factory=dict)  # name -> index of an aggregate asked for by name
    later: dict = field(default_factory=dict)  # metric id -> configuration left to GX

    def agg(self, expr) -> int:
        self.columns.append(expr.alias(f"m{len(self.columns)}"))
        return len(self.columns) - 1

    def domain_filter(self, domain: dict):
        """The rows of a metric domain, as a condition (None: not a domain handled here)."""
        from pyspark.sql import functions as F

        keep = F.lit(True)
        if domain.get("row_condition"):
            condition = domain["row_condition"]
            if domain.get("condition_parser") not in (None, "great_expectations"):
                return None
            if isinstance(condition, dict):
                condition = deserialize_row_condition(condition)
            clause = self.engine.condition_to_filter_clause(condition)
            keep = keep & (F.expr(clause) if isinstance(clause, str) else clause)
        ignore = domain.get("ignore_row_if")
        if "column_A" in domain:
            a, b = F.col(domain["column_A"]), F.col(domain["column_B"])
            if ignore == "both_values_are_missing":
                keep = keep & (a.isNotNull() | b.isNotNull())
            elif ignore == "either_value_is_missing":
                keep = keep & a.isNotNull() & b.isNotNull()
            elif ignore not in (None, "neither"):
                return None
        elif "column_list" in domain:
            cols = [F.col(c) for c in domain["column_list"]]
            if ignore == "all_values_are_missing":
                any_value = cols[0].isNotNull()
                for c in cols[1:]:
                    any_value = any_value | c.isNotNull()
                keep = keep & any_value
            elif ignore == "any_value_is_missing":
                for c in cols:
                    keep = keep & c.isNotNull()
            elif ignore not in (None, "never"):
                return None
        return keep

    def add(self, metric) -> None:
        """Plan one metric configuration: here, or left to Great Expectations."""
        from pyspark.sql import functions as F

        name, domain, kw = (
            metric.metric_name,
            metric.metric_domain_kwargs,
            metric.metric_value_kwargs,
        )
        keep = self.domain_filter(domain)
        column = F.col(domain["column"]) if "column" in domain else None

        def count(condition):
            return self.agg(F.count(F.when(keep & condition, 1)))

        def value(i):
            return lambda row, groups: row[i]

        reader = None
        if keep is None:
            reader = None
        elif name == "table.row_count" or name.endswith(".filtered_row_count"):
            reader = value(count(F.lit(True)))
        elif (
            name.endswith(".unexpected_count")
            and name[: -len(".unexpected_count")] in _MAP_CONDITIONS
        ):
            condition = _MAP_CONDITIONS[name[: -len(".unexpected_count")]](column, kw)
            reader = value(count(condition))
        elif name == "column_pair_values.a_greater_than_b.unexpected_count":
            a, b = F.col(domain["column_A"]), F.col(domain["column_B"])
            # As GX: a row where either side is null compares to null and is not counted.
            reader = value(count(~((a >= b) if kw.get("or_equal") else (a > b))))
        elif name in (
            "column_values.unique.unexpected_count",
            "compound_columns.unique.unexpected_count",
        ):
            keys = [domain["column"]] if "column" in domain else list(domain["column_list"])
            if "column" in domain:
                keep = keep & column.isNotNull()
            self.groupings.append((keep, keys))
            n = len(self.groupings) - 1
            reader = lambda row, groups: groups[n]
        elif name in ("column.min", "column.max", "column.mean") and not kw:
            fn = {"column.min": F.min, "column.max": F.max, "column.mean": F.avg}[name]
            reader = value(self.agg(fn(F.when(keep, column))))
        elif name == "column.non_null_proportion":
            rows, nonnull = count(F.lit(True)), count(column.isNotNull())
            reader = lambda row, groups: row[nonnull] / row[rows] if row[rows] else 0
        elif name.startswith("column.distinct_values.") and name.split(".", 2)[2] in (
            "not_in_set", "not_in_set.count", "missing_from_column", "missing_from_column.count",
        ):  # fmt: skip
            reader = self._distinct(name, kw, self.agg(F.collect_set(F.when(keep, column))))
        if reader is None:
            self.later[metric.id] = metric
        else:
            self.readers[metric.id] = reader

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

    def run(self) -> tuple[dict, dict]:
        """The values of every metric planned here, and of the riders: one aggregation, one job
        per grouping."""
        from pyspark.sql import functions as F

        row = self.frame.agg(*self.columns).first() if self.columns else None
        groups = []
        for keep, keys in self.groupings:
            repeated = (
                self.frame.where(keep).groupBy(*keys).count().where(F.col("count") > 1)
                .agg(F.sum("count")).first()[0]
            )  # fmt: skip
            groups.append(int(repeated or 0))
        metrics = {mid: read(row, groups) for mid, read in self.readers.items()}
        return metrics, {name: row[i] for name, i in self.riders.items()}


def validate(
    context, validator, suite: gx.ExpectationSuite, parameters: dict, label: str, riders=None
):
    """Validate `suite` on the validator's batch in one pass; store the result and return it with
    the values of `riders` (name -> aggregate Column, computed in the same aggregation; None when
    the pass fell back to Great Expectations' own path)."""
    engine = validator.execution_engine
    runtime = {"result_format": copy.deepcopy(RESULT_FORMAT)}
    configs = validator.process_expectations_for_validation(
        suite.expectation_configurations, parameters
    )
    plan = _Plan(engine, validator.active_batch.data.dataframe)
    planned, results = [], {}
    for n, config in enumerate(configs):
        config = copy.deepcopy(config)
        config.kwargs["batch_id"] = validator.active_batch_id
        try:
            expectation = config.to_domain_obj()
            deps = expectation.get_validation_dependencies(
                execution_engine=engine, runtime_configuration=copy.deepcopy(runtime)
            )
            for metric in deps.get_metric_configurations():
                if metric.id not in plan.readers and metric.id not in plan.later:
                    if metric.metric_name.endswith(".unexpected_values"):
                        plan.later[metric.id] = metric  # only if something is unexpected
                    else:
                        plan.add(metric)
            planned.append((n, config, expectation, deps))
        except Exception:  # noqa: BLE001  # GX's own path reports it as an expectation error
            results[n] = None
    for name, column in (riders or {}).items():
        plan.riders[name] = plan.agg(column)
    try:
        metrics, ridden = plan.run()
    except Exception:  # noqa: BLE001  # a metric Spark cannot compute here: GX's own path
        results = dict.fromkeys(range(len(configs)))
        planned, metrics, ridden = [], {}, None
    samples = {}
    for metric_id, metric in plan.later.items():
        if metric.metric_name.endswith(".unexpected_values"):
            count_id = _count_id(metric, planned)
            if count_id in metrics and not metrics[count_id]:
                metrics[metric_id] = []
                continue
        samples[metric_id] = metric
    if samples:
        computed, _ = validator.compute_metrics(
            list(samples.values()), runtime_configuration=copy.deepcopy(runtime)
        )
        metrics.update(computed)
    for n, config, expectation, _ in planned:
        try:
            results[n] = expectation.metrics_validate(
                metrics=metrics,
                execution_engine=engine,
                runtime_configuration=copy.deepcopy(runtime),
            )
        except Exception:  # noqa: BLE001
            results[n] = None
    failed = [configs[n] for n, r in results.items() if r is None]
    fallback = iter(validator.graph_validate(failed, copy.deepcopy(runtime)) if failed else [])
    ordered = [
        results[n] if results.get(n) is not None else next(fallback) for n in range(len(configs))
    ]
    return _store(context, validator, suite, ordered, label), ridden


def _count_id(sample, planned):
    """The id of the unexpected_count beside an unexpected_values metric of the same expectation."""
    for _, _, _, deps in planned:
        by_name = deps.metric_configurations
        for name, metric in by_name.items():
            if metric.id == sample.id:
                count = by_name.get(name.replace(".unexpected_values", ".unexpected_count"))
                return count.id if count is not None else None
    return None


def _store(context, validator, suite, results: list[ExpectationValidationResult], label: str):
    evaluated = len(results)
    successful = sum(bool(r.success) for r in results)
    run_id = RunIdentifier(run_name=label, run_time=dt.datetime.now(dt.UTC))
    result = ExpectationSuiteValidationResult(
        results=results,
        success=successful == evaluated,
        suite_name=suite.name,
        statistics={
            "evaluated_expectations": evaluated,
            "successful_expectations": successful,
            "unsuccessful_expectations": evaluated - successful,
            "success_percent": 100.0 * successful / evaluated if evaluated else None,
        },
        meta={
            "great_expectations_version": gx.__version__,
            "batch_spec": convert_to_json_serializable(validator.active_batch_spec),
            "batch_markers": validator.active_batch_markers,
            "active_batch_definition": convert_to_json_serializable(
                validator.active_batch_definition
            ),
            "run_id": run_id,
            "validation_time": run_id.run_time,
        },
        batch_id=validator.active_batch_id,
    )
    suite_id = ExpectationSuiteIdentifier(name=suite.name)
    context.validation_results_store.store_validation_results(
        suite_validation_result=result,
        suite_validation_result_identifier=ValidationResultIdentifier(
            expectation_suite_identifier=suite_id,
            run_id=run_id,
            batch_identifier=validator.active_batch_id,
        ),
        expectation_suite_identifier=suite_id,
    )
    return result
