"""What a run leaves behind: the pass/fail table, GX Data Docs and summary.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.expectations.row_conditions import deserialize_row_condition

from expectations.sources import first_line
from m2ctr.atomic import write_text_atomic

SITE_NAME = "m2ctr"


@dataclass
class Row:
    suite: str
    expectation: str
    success: bool
    observed: str


def docs_context(docs_dir: Path):
    """An in-memory GX context whose only Data Docs site is the report directory."""
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


def build_data_docs(context, docs_dir: Path) -> Path:
    """Render every validation of the run once (an index page even when nothing ran)."""
    context.build_data_docs(site_names=[SITE_NAME])
    return (docs_dir / "index.html").resolve()


def describe(config) -> str:
    """`expectation_type(column)`, `(A > B)`, `(a, b)`, with ` | condition` where there is one."""
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


def observed(result) -> str:
    """The observed value of one expectation result, short enough for the table."""
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return "error: " + first_line(Exception(info.get("exception_message", "")))
    res = result.result or {}
    if "observed_value" in res:
        return _short(res["observed_value"])
    if "unexpected_count" in res:
        if res["unexpected_count"] is None:  # a table without rows
            return "no rows"
        text = f"{res['unexpected_count']} unexpected ({res.get('unexpected_percent') or 0:.2f}%)"
        sample = res.get("partial_unexpected_list") or []
        if res["unexpected_count"] and sample:
            text += " e.g. " + _short(sample[:3], 40)
        return text
    return ""


def jsonable(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def results(label: str, suite_result) -> tuple[list[Row], list[dict]]:
    """Table rows and summary.json entries of one validated batch."""
    rows, entries = [], []
    for r in suite_result.results:
        config = r.expectation_config
        row = Row(label, describe(config), bool(r.success), observed(r))
        rows.append(row)
        entries.append(
            {
                "batch": label,
                "expectation": config.type,
                "kwargs": jsonable({k: v for k, v in config.kwargs.items() if k != "batch_id"}),
                "description": row.expectation,
                "success": row.success,
                "observed": row.observed,
            }
        )
    return rows, entries


def missing(name: str, reason: str) -> tuple[Row, dict]:
    """The table row and summary entry of a suite whose table is not there."""
    entry = {
        "success": False,
        "error": reason,
        "expectations": [{"expectation": "table_exists", "success": False, "observed": reason}],
    }
    return Row(name, "table_exists", False, reason), entry


def write_summary(summary: dict, report_dir: str) -> Path:
    path = Path(report_dir) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in summary.items() if k != "rows"}
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    return path


def write_result_beside(summary: dict, summary_path: Path, schema_directory: Path) -> Path | None:
    """The verdict of this validation in `<schema>.db/_data_quality.json`; None if that schema
    directory is not there (nothing was built)."""
    from m2ctr.warehouse import data_quality_path

    if not Path(schema_directory).is_dir():
        return None
    path = data_quality_path(schema_directory)
    result = {
        "created_at": summary["created_at"],
        "success": summary["success"],
        "suites": {name: s["success"] for name, s in summary["suites"].items()},
        "summary": str(Path(summary_path).resolve()),
        "data_docs": str(Path(summary["data_docs"]).resolve()),
    }
    return write_text_atomic(path, json.dumps(result, indent=2) + "\n")


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
