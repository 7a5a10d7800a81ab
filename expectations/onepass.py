"""One pass per table: every metric a suite needs, computed in one Spark aggregation.

Great Expectations bundles a round of aggregate metrics that share a domain into one Spark job,
but a suite over a wide table has many domains (a row condition, the rows a column pair keeps)
and many rounds, and every row-by-row expectation samples its unexpected values with a job of
its own: 115 jobs for training_samples even without the samples. Here each expectation still
declares what it needs (`get_validation_dependencies`) and still judges it (`metrics_validate`,
the same code Great Expectations runs), but the metrics in between are computed as Spark SQL
(`expectations/aggregation.py`):

- one aggregation over the table: row counts, null / set / range / length / pair
  counts (each with its domain's filter folded into the count), min, max, mean, distinct values,
  and the values other suites take from this table (`riders`, see references.py);
- one grouping per uniqueness check (the rows whose key occurs more than once);
- all of them in one Spark job, the branches of one union (`aggregation.Plan.run`);
- Great Expectations itself for anything else (schema metrics cost no job), and for the samples
  of unexpected values of a failing expectation (one job each; a failure is the exception).

An expectation that `mostly` holds may pass with some unexpected values (raw's malformed
records, empty item texts). Its sample would cost a job of its own on every run, so it takes
its examples from the same aggregation instead: the least and the greatest unexpected value
(bounded, whatever the count). Should it fail, Great Expectations samples it as any other.

The result is an ordinary suite validation result, stored for Data Docs like a checkpoint's.
"""

from __future__ import annotations

import copy
import datetime as dt

import great_expectations as gx
from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.util import convert_to_json_serializable

from expectations.aggregation import Plan

# Up to 20 unexpected values per failing expectation, sampled by Great Expectations.
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 20}


def validate(
    context,
    validator,
    suite: gx.ExpectationSuite,
    parameters: dict,
    label: str,
    riders=None,
    parsed_on_scan: bool = False,
):
    """Validate `suite` on the validator's batch in one pass; store the result and return it with
    the values of `riders` (name -> aggregate as Spark SQL, computed in the same aggregation; None when
    the pass fell back to Great Expectations' own path).

    `parsed_on_scan`: a batch that Spark parses from text on every scan (raw CSV). Its pass is
    one aggregation, a single scan; it is persisted before anything scans it a second time (a
    sample of a failing expectation, Great Expectations' own path), since Spark reads its
    corrupt-record column alone only from a cache.
    """
    engine = validator.execution_engine
    runtime = {"result_format": copy.deepcopy(RESULT_FORMAT)}
    configs = validator.process_expectations_for_validation(
        suite.expectation_configurations, parameters
    )
    frame = validator.active_batch.data.dataframe
    plan = Plan(engine, frame)
    planned, results, examples = [], {}, {}
    for n, config in enumerate(configs):
        config = copy.deepcopy(config)
        config.kwargs["batch_id"] = validator.active_batch_id
        try:
            expectation = config.to_domain_obj()
            deps = expectation.get_validation_dependencies(
                execution_engine=engine, runtime_configuration=copy.deepcopy(runtime)
            )
            for metric in deps.get_metric_configurations():
                if metric.id in plan.readers or metric.id in plan.later:
                    continue
                if not metric.metric_name.endswith(".unexpected_values"):
                    plan.add(metric)
                elif _mostly(expectation) and plan.examples(metric):
                    examples[metric.id] = metric
                else:
                    plan.later[metric.id] = metric  # sampled only if something is unexpected
            planned.append((n, config, expectation, deps))
        except Exception:  # noqa: BLE001  # GX's own path reports it as an expectation error
            results[n] = None
    for name, column in (riders or {}).items():
        plan.riders[name] = plan.agg(column)
    try:
        metrics, ridden = plan.run(split=not parsed_on_scan)
    except Exception:  # noqa: BLE001  # a metric Spark cannot compute here: GX's own path
        results = dict.fromkeys(range(len(configs)))
        planned, metrics, ridden, examples = [], {}, None, {}
    for metric_id, metric in [*plan.later.items(), *examples.items()]:
        count_id = _count_id(metric, planned)
        if count_id in metrics and not metrics[count_id]:
            metrics[metric_id] = []  # nothing unexpected: no sample, no examples
    cached = _Cache(frame if parsed_on_scan else None)
    try:
        sample = {mid: m for mid, m in plan.later.items() if mid not in metrics}
        if sample:
            metrics.update(cached.sample(validator, sample, runtime))
        _judge(planned, metrics, engine, runtime, results)
        # A `mostly` expectation that failed: its examples give way to a sample.
        failing = {n for n, r in results.items() if r is not None and not r.success}
        resample = {
            m.id: m
            for n, _, _, deps in planned
            if n in failing
            for m in deps.get_metric_configurations()
            if m.id in examples and metrics.get(m.id)
        }
        if resample:
            metrics.update(cached.sample(validator, resample, runtime))
            _judge([p for p in planned if p[0] in failing], metrics, engine, runtime, results)
        failed = [configs[n] for n, r in results.items() if r is None]
        if failed:
            cached.persist()
        fallback = iter(validator.graph_validate(failed, copy.deepcopy(runtime)) if failed else [])
        ordered = [
            results[n] if results.get(n) is not None else next(fallback)
            for n in range(len(configs))
        ]
    finally:
        cached.release()
    return _store(context, validator, suite, ordered, label), ridden


def _mostly(expectation) -> bool:
    """Whether the expectation may pass with some unexpected values."""
    mostly = getattr(expectation, "mostly", None)
    return mostly is not None and mostly < 1


def _judge(planned, metrics: dict, engine, runtime: dict, results: dict) -> None:
    """Each planned expectation judged on the metrics (None where it raised: GX's own path)."""
    for n, _, expectation, _ in planned:
        try:
            results[n] = expectation.metrics_validate(
                metrics=metrics,
                execution_engine=engine,
                runtime_configuration=copy.deepcopy(runtime),
            )
        except Exception:  # noqa: BLE001
            results[n] = None


class _Cache:
    """The batch persisted on the first scan after the one pass, if asked to (`frame` not None)."""

    def __init__(self, frame):
        self.frame, self.persisted = frame, False

    def persist(self) -> None:
        if self.frame is not None and not self.persisted:
            self.frame.persist()
            self.persisted = True

    def sample(self, validator, metrics: dict, runtime: dict) -> dict:
        """Great Expectations' samples of unexpected values (one Spark job per metric)."""
        self.persist()
        computed, _ = validator.compute_metrics(
            list(metrics.values()), runtime_configuration=copy.deepcopy(runtime)
        )
        return computed

    def release(self) -> None:
        if self.persisted:
            self.frame.unpersist()


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
