"""Expectation suites, one per warehouse layer, and the table of their builders.

Every check is one of Great Expectations' own expectations. Values that come
from another table (the staged row count, its set of days, the raw date range)
are suite parameters (`{"$PARAMETER": name}`), filled in at validation time, so
the suites stay declarative and show their parameters in Data Docs.

The rule split: dbt tests keep the structure of the build (keys, accepted values
of staging types, conservation and leak invariants); these suites check the
values of every built table (ranges, flags, clicks <= impressions, dates,
distributions, cross-table and raw-file checks). Column families (counts, ctrs,
flags, clicks/impressions pairs) come from `m2ctr.schema`, restricted to the
columns of the table being validated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.expectations.row_conditions import Column

from expectations.settings import Settings
from expectations.sources import CORRUPT_RECORD, LOG_TS, TableMissing
from m2ctr.schema import (
    COUNT_COLUMNS,
    CTR_COLUMNS,
    DAYS_COLUMNS,
    DEEP_FEATURES,
    FLAG_COLUMNS,
    HISTORY_FEATURES,
    ITEM_FEATURES,
    ITEM_TEXT_COLUMNS,
    KEY_COLUMNS,
    LAST_HIST_DATES,
    PAIR_FEATURES,
    RAW_REQUIRED,
    REJECT_REASONS,
    SCENES,
    TEXT_COLUMNS,
    USER_FEATURES,
    clicks_impressions_pairs,
)

INTEGER_TYPES = ["IntegerType", "LongType", "ShortType", "ByteType"]
FLOAT_TYPES = ["DoubleType", "FloatType"]
TIMESTAMP_TYPES = ["TimestampType", "TimestampNTZType"]

STG_REQUIRED = (*KEY_COLUMNS, "log_ts", "date")
TRAINING_REQUIRED = (
    *STG_REQUIRED,
    *HISTORY_FEATURES,
    *LAST_HIST_DATES,
    *TEXT_COLUMNS,
    *DEEP_FEATURES,
)
FEATURE_TABLE_KEYS = {
    "user_features_daily": ("user_id", "date"),
    "item_features_daily": ("item_id", "date"),
    "user_item_history": ("user_id", "item_id", "date"),
}
# The smoothed ctrs pull toward the rate of the row's scene, so only training_samples has them.
FEATURE_TABLE_REQUIRED = {
    "user_features_daily": ("user_id", "date", *(c for c in USER_FEATURES if "smooth" not in c)),
    "item_features_daily": ("item_id", "date", *(c for c in ITEM_FEATURES if "smooth" not in c)),
    "user_item_history": ("user_id", "item_id", "date", *PAIR_FEATURES),
}


def _not_null(column: str) -> gxe.Expectation:
    # Aggregate form of "no nulls": bundled into one Spark pass with the other aggregates,
    # where expect_column_values_to_not_be_null costs a job per column.
    return gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(column=column, min_value=1.0)


def _range(column: str, low: float, high: float | None, row_wise: bool) -> list[gxe.Expectation]:
    """Values in [low, high]: row by row, or by the column's min (and max)."""
    if row_wise:
        return [gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)]
    checks = [gxe.ExpectColumnMinToBeBetween(column=column, min_value=low)]
    if high is not None:
        checks.append(gxe.ExpectColumnMaxToBeBetween(column=column, max_value=high))
    return checks


def _flag(column: str, row_wise: bool) -> gxe.Expectation:
    if row_wise:
        return gxe.ExpectColumnValuesToBeInSet(column=column, value_set=[0, 1])
    return gxe.ExpectColumnDistinctValuesToBeInSet(column=column, value_set=[0, 1])


def _history_value_checks(columns: list[str], row_wise: bool) -> list[gxe.Expectation]:
    """Every history feature of a table: no nulls, counts >= 0, ctr in [0, 1], flags 0/1,
    clicks <= impressions; with `row_wise` also its type, and every range checked row by row.

    The feature marts are checked by aggregates (column min / max / distinct values: the
    observed extreme names the problem at the cost of no extra Spark job); the table the
    trainer reads row by row, so that the report counts the affected training rows.
    """
    counts = set(COUNT_COLUMNS) | set(DAYS_COLUMNS)
    pairs = dict(clicks_impressions_pairs(columns))
    checks: list[gxe.Expectation] = []
    for col in (c for c in columns if c in HISTORY_FEATURES):
        # A null feature would reach the trainer as NaN; "no history" is 0 by contract.
        checks.append(_not_null(col))
        if row_wise:
            types = FLOAT_TYPES if col in CTR_COLUMNS else INTEGER_TYPES
            checks.append(gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=types))
        if col in counts:
            checks += _range(col, 0, None, row_wise)
        if col in CTR_COLUMNS:
            checks += _range(col, 0, 1, row_wise)
        if col in FLAG_COLUMNS:
            checks.append(_flag(col, row_wise))
        if col in pairs:
            checks.append(
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A=pairs[col], column_B=col, or_equal=True
                )
            )
    return checks


def _point_in_time_checks(columns: list[str]) -> list[gxe.Expectation]:
    """A row dated D may only use history from days < D (no history: a null date, ignored)."""
    return [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="date", column_B=c, or_equal=False, ignore_row_if="either_value_is_missing"
        )
        for c in LAST_HIST_DATES
        if c in columns
    ]


def _suite(name: str, expectations: list[gxe.Expectation]) -> gx.ExpectationSuite:
    return gx.ExpectationSuite(name=name, expectations=expectations)


def raw_suite(max_malformed_rate: float) -> gx.ExpectationSuite:
    """Raw CSV, every column read as a string."""
    mostly = 1.0 - max_malformed_rate
    return _suite(
        "raw",
        [
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
            gxe.ExpectTableColumnsToMatchSet(column_set=list(RAW_REQUIRED), exact_match=False),
            # log_time parsed with the build's formats (var log_time_formats): null when none fits.
            gxe.ExpectColumnValuesToNotBeNull(column=LOG_TS, mostly=mostly),
            gxe.ExpectColumnValuesToBeNull(column=CORRUPT_RECORD, mostly=mostly),
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=["0", "1"], mostly=mostly),
            gxe.ExpectColumnValuesToBeInSet(
                column="scene", value_set=[str(s) for s in SCENES], mostly=mostly
            ),
            gxe.ExpectColumnValuesToNotBeNull(column="user_id", mostly=mostly),
            gxe.ExpectColumnValuesToNotBeNull(column="item_id", mostly=mostly),
        ],
    )


def _impression_checks() -> list[gxe.Expectation]:
    """What stg_impressions and training_samples share: keys present, label 0/1, known scenes."""
    return [
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in STG_REQUIRED),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
        gxe.ExpectColumnValuesToBeInSet(column="scene", value_set=list(SCENES)),
        gxe.ExpectColumnValuesToBeUnique(column="impression_id"),
    ]


def stg_impressions_suite(with_raw_range: bool) -> gx.ExpectationSuite:
    checks: list[gxe.Expectation] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectTableColumnsToMatchSet(column_set=list(STG_REQUIRED), exact_match=False),
        gxe.ExpectColumnValuesToBeInTypeList(column="label", type_list=INTEGER_TYPES),
        gxe.ExpectColumnValuesToBeInTypeList(column="scene", type_list=INTEGER_TYPES),
        gxe.ExpectColumnValuesToBeOfType(column="impression_id", type_="StringType"),
        gxe.ExpectColumnValuesToBeOfType(column="user_id", type_="StringType"),
        gxe.ExpectColumnValuesToBeOfType(column="item_id", type_="StringType"),
        gxe.ExpectColumnValuesToBeInTypeList(column="log_ts", type_list=TIMESTAMP_TYPES),
        gxe.ExpectColumnValuesToBeOfType(column="date", type_="DateType"),
        *_impression_checks(),
    ]
    if with_raw_range:
        checks.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="date",
                min_value={"$PARAMETER": "raw_min_date"},
                max_value={"$PARAMETER": "raw_max_date"},
            )
        )
    return _suite("stg_impressions", checks)


def quarantine_impressions_suite(with_share: bool) -> gx.ExpectationSuite:
    checks: list[gxe.Expectation] = [
        gxe.ExpectColumnToExist(column="reject_reason"),
        gxe.ExpectColumnValuesToNotBeNull(column="reject_reason"),
        gxe.ExpectColumnValuesToBeInSet(column="reject_reason", value_set=list(REJECT_REASONS)),
    ]
    if with_share:
        # At most --max-malformed-rate of all raw records (staged + quarantined) rejected.
        checks.append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=0, max_value={"$PARAMETER": "max_quarantined_rows"}
            )
        )
    return _suite("quarantine_impressions", checks)


def feature_table_suite(name: str, columns: list[str]) -> gx.ExpectationSuite:
    """user_features_daily, item_features_daily or user_item_history."""
    keys = FEATURE_TABLE_KEYS[name]
    checks: list[gxe.Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=list(FEATURE_TABLE_REQUIRED[name]), exact_match=False
        ),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=list(keys)),
        *(gxe.ExpectColumnValuesToNotBeNull(column=k) for k in keys),
        *_history_value_checks(columns, row_wise=False),
        *_point_in_time_checks(columns),
    ]
    return _suite(name, checks)


def training_samples_suite(
    columns: list[str],
    scenes: list[int],
    label_rate_bounds: tuple[float, float],
    min_text_rate: float,
) -> gx.ExpectationSuite:
    low, high = label_rate_bounds
    checks: list[gxe.Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(TRAINING_REQUIRED), exact_match=False),
        # One row per staged impression.
        gxe.ExpectTableRowCountToEqual(value={"$PARAMETER": "stg_impressions_row_count"}),
        # A deleted partition directory shows up as a missing day.
        gxe.ExpectColumnDistinctValuesToEqualSet(
            column="date", value_set={"$PARAMETER": "stg_impressions_dates"}
        ),
        *_impression_checks(),
        *(
            gxe.ExpectColumnMeanToBeBetween(
                column="label", min_value=low, max_value=high, row_condition=Column("scene") == s
            )
            for s in scenes
        ),
        # The trainer's table: every feature's type and range, row by row.
        *_history_value_checks(columns, row_wise=True),
        *(gxe.ExpectColumnValuesToBeOfType(column=c, type_="DateType") for c in LAST_HIST_DATES),
        *_point_in_time_checks(columns),
    ]
    for col in DEEP_FEATURES:
        checks += [
            _not_null(col),
            gxe.ExpectColumnValuesToBeInTypeList(column=col, type_list=FLOAT_TYPES),
        ]
    for col in TEXT_COLUMNS:
        checks += [_not_null(col), gxe.ExpectColumnValuesToBeOfType(column=col, type_="StringType")]
    checks += [
        gxe.ExpectColumnValueLengthsToBeBetween(column=c, min_value=1, mostly=min_text_rate)
        for c in ITEM_TEXT_COLUMNS
    ]
    return _suite("training_samples", checks)


# -- the table of suite builders ------------------------------------------------------------------


class References(Protocol):
    """What a builder may ask of the run beside its settings; each raises `TableMissing`."""

    def columns(self, model: str) -> list[str]: ...
    def raw_date_range(self) -> dict: ...
    def staged(self) -> dict: ...


Built = tuple[gx.ExpectationSuite, dict]


@dataclass(frozen=True)
class SuiteSpec:
    """How to build one suite: `build(name, settings, references)` -> (suite, suite parameters).

    `references`: the tables, beside its own, whose values the suite compares to.
    """

    build: Callable[[str, Settings, References], Built]
    references: tuple[str, ...] = ()


def _build_raw(name: str, settings: Settings, refs: References) -> Built:
    return raw_suite(settings.max_malformed_rate), {}


def _build_stg_impressions(name: str, settings: Settings, refs: References) -> Built:
    try:
        dates = refs.raw_date_range()
    except TableMissing:
        # Without (parseable) raw input the date-range check has nothing to compare to.
        return stg_impressions_suite(with_raw_range=False), {}
    return stg_impressions_suite(with_raw_range=True), dates


def _build_quarantine_impressions(name: str, settings: Settings, refs: References) -> Built:
    # The share of all rejected records together, beside the raw suite's per-defect shares:
    # q <= rate * (staged + q)  <=>  q <= rate * staged / (1 - rate), a bound from the staged
    # count alone (known before this table is read).
    try:
        staged = refs.staged()["stg_impressions_row_count"]
    except TableMissing:
        return quarantine_impressions_suite(with_share=False), {}
    rate = Fraction(str(settings.max_malformed_rate))  # exact: the bound is an integer
    if rate >= 1:
        return quarantine_impressions_suite(with_share=False), {}
    return quarantine_impressions_suite(with_share=True), {
        "max_quarantined_rows": math.floor(rate * staged / (1 - rate))
    }


def _build_feature_table(name: str, settings: Settings, refs: References) -> Built:
    return feature_table_suite(name, refs.columns(name)), {}


def _build_training_samples(name: str, settings: Settings, refs: References) -> Built:
    try:
        staged = refs.staged()
    except TableMissing as exc:
        raise TableMissing(f"{exc} (training_samples is compared to it)") from exc
    suite = training_samples_suite(
        refs.columns(name), staged["scenes"], settings.label_rate_bounds, settings.min_text_rate
    )
    return suite, {k: staged[k] for k in ("stg_impressions_row_count", "stg_impressions_dates")}


SUITES: dict[str, SuiteSpec] = {
    "raw": SuiteSpec(_build_raw),
    "stg_impressions": SuiteSpec(_build_stg_impressions, references=("raw",)),
    "quarantine_impressions": SuiteSpec(
        _build_quarantine_impressions, references=("stg_impressions",)
    ),
    **{name: SuiteSpec(_build_feature_table) for name in FEATURE_TABLE_KEYS},
    "training_samples": SuiteSpec(_build_training_samples, references=("stg_impressions",)),
}
