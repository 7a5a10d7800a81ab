"""Expectation suites, one builder per warehouse layer.

Every check is one of Great Expectations' own expectations. Values that come
from another table (the staged row count, its set of days, the raw date range)
are suite parameters (`{"$PARAMETER": name}`), filled in at validation time, so
the suites stay declarative and show their parameters in Data Docs.

Column-family checks (counts >= 0, clicks <= impressions, ctr in [0, 1]) are
derived from the column names of the table being validated, so a feature the
warehouse adds later is covered without touching this file.
"""

from __future__ import annotations

import re

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.expectations.row_conditions import Column

from m2ctr import schema

SCENES = list(schema.SCENES)
REJECT_REASONS = list(schema.REJECT_REASONS)
TEXT_COLUMNS = list(schema.TEXT_COLUMNS)
DEEP_FEATURES = list(schema.DEEP_FEATURES)
RAW_COLUMNS = list(schema.RAW_COLUMNS)
RAW_REQUIRED = list(schema.RAW_REQUIRED)
# Spark's CSV reader puts a record whose field count differs from the schema here.
CORRUPT_RECORD = "_corrupt_record"
# Both raw time formats: `yyyy-MM-dd HH:mm:ss` and `yyyy/M/d H:mm`.
LOG_TIME_REGEX = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]) ([01]\d|2[0-3]):[0-5]\d:[0-5]\d$"
    r"|^\d{4}/(0?[1-9]|1[0-2])/(0?[1-9]|[12]\d|3[01]) ([01]?\d|2[0-3]):[0-5]\d$"
)

INTEGER_TYPES = ["IntegerType", "LongType", "ShortType", "ByteType"]
TIMESTAMP_TYPES = ["TimestampType", "TimestampNTZType"]


def _side_features(prefix: str) -> list[str]:
    per_scene = [f"{prefix}_{k}_cum_s{s}" for k in ("imp", "clk") for s in SCENES]
    return [
        f"{prefix}_imp_7d",
        f"{prefix}_clk_7d",
        f"{prefix}_ctr_7d",
        f"{prefix}_ctr_7d_smooth",
        f"{prefix}_imp_cum",
        f"{prefix}_clk_cum",
        f"{prefix}_ctr_cum",
        f"{prefix}_ctr_cum_smooth",
        *per_scene,
        f"{prefix}_days_since_first",
        f"{prefix}_has_history",
    ]


USER_FEATURES = _side_features("u")
ITEM_FEATURES = _side_features("i")
PAIR_FEATURES = ["ui_imp_hist", "ui_clk_hist", "ui_has_history"]
LAST_HIST_DATES = ["u_last_hist_date", "i_last_hist_date", "ui_last_hist_date"]
STG_REQUIRED = ["impression_id", "user_id", "item_id", "scene", "label", "log_ts", "date"]
TRAINING_REQUIRED = [
    *STG_REQUIRED,
    *USER_FEATURES,
    *ITEM_FEATURES,
    *PAIR_FEATURES,
    *LAST_HIST_DATES,
    *TEXT_COLUMNS,
    *DEEP_FEATURES,
]
FEATURE_TABLE_KEYS = {
    "user_features_daily": ["user_id", "date"],
    "item_features_daily": ["item_id", "date"],
    "user_item_history": ["user_id", "item_id", "date"],
}
# The smoothed ctrs pull toward the rate of the row's scene, so only training_samples has them.
FEATURE_TABLE_REQUIRED = {
    "user_features_daily": ["user_id", "date", *(c for c in USER_FEATURES if "smooth" not in c)],
    "item_features_daily": ["item_id", "date", *(c for c in ITEM_FEATURES if "smooth" not in c)],
    "user_item_history": ["user_id", "item_id", "date", *PAIR_FEATURES],
}

_FEATURE_COLUMN = re.compile(r"^(u|i|ui)_")
_COUNT_COLUMN = re.compile(r"^(u|i|ui)_(imp|clk)_")


def _not_null(column: str) -> gxe.Expectation:
    # Aggregate form of "no nulls": bundled into one Spark pass with the other aggregates,
    # where expect_column_values_to_not_be_null costs a job per column.
    return gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(column=column, min_value=1.0)


def _history_feature_checks(columns: list[str], ranges: bool = True) -> list[gxe.Expectation]:
    """No nulls; with `ranges`: counts >= 0, ctr in [0, 1], clicks <= impressions, flags 0/1."""
    present = set(columns)
    checks: list[gxe.Expectation] = []
    for col in columns:
        if not _FEATURE_COLUMN.match(col) or col.endswith("_last_hist_date"):
            continue
        # A null feature would reach the trainer as NaN; "no history" is 0 by contract.
        checks.append(_not_null(col))
        if not ranges:
            continue
        if _COUNT_COLUMN.match(col) or col.endswith("_days_since_first"):
            checks.append(gxe.ExpectColumnMinToBeBetween(column=col, min_value=0))
        if "_ctr_" in col or col.endswith("_ctr"):
            checks.append(gxe.ExpectColumnMinToBeBetween(column=col, min_value=0))
            checks.append(gxe.ExpectColumnMaxToBeBetween(column=col, max_value=1))
        if col.endswith("_has_history"):
            checks.append(gxe.ExpectColumnDistinctValuesToBeInSet(column=col, value_set=[0, 1]))
        if "_clk_" in col and col.replace("_clk_", "_imp_") in present:
            checks.append(
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A=col.replace("_clk_", "_imp_"), column_B=col, or_equal=True
                )
            )
    return checks


def _suite(name: str, expectations: list[gxe.Expectation]) -> gx.ExpectationSuite:
    return gx.ExpectationSuite(name=name, expectations=expectations)


def raw_suite(max_malformed_rate: float) -> gx.ExpectationSuite:
    """Raw CSV, every column read as a string."""
    mostly = 1.0 - max_malformed_rate
    return _suite(
        "raw",
        [
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
            gxe.ExpectTableColumnsToMatchSet(column_set=RAW_REQUIRED, exact_match=False),
            gxe.ExpectColumnValuesToMatchRegex(
                column="log_time", regex=LOG_TIME_REGEX, mostly=mostly
            ),
            gxe.ExpectColumnValuesToBeNull(column=CORRUPT_RECORD, mostly=mostly),
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=["0", "1"], mostly=mostly),
            gxe.ExpectColumnValuesToBeInSet(
                column="scene", value_set=[str(s) for s in SCENES], mostly=mostly
            ),
            gxe.ExpectColumnValuesToNotBeNull(column="user_id", mostly=mostly),
            gxe.ExpectColumnValuesToNotBeNull(column="item_id", mostly=mostly),
        ],
    )


def stg_impressions_suite(with_raw_range: bool) -> gx.ExpectationSuite:
    checks: list[gxe.Expectation] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectTableColumnsToMatchSet(column_set=STG_REQUIRED, exact_match=False),
        gxe.ExpectColumnValuesToBeInTypeList(column="label", type_list=INTEGER_TYPES),
        gxe.ExpectColumnValuesToBeInTypeList(column="scene", type_list=INTEGER_TYPES),
        gxe.ExpectColumnValuesToBeOfType(column="impression_id", type_="StringType"),
        gxe.ExpectColumnValuesToBeOfType(column="user_id", type_="StringType"),
        gxe.ExpectColumnValuesToBeOfType(column="item_id", type_="StringType"),
        gxe.ExpectColumnValuesToBeInTypeList(column="log_ts", type_list=TIMESTAMP_TYPES),
        gxe.ExpectColumnValuesToBeOfType(column="date", type_="DateType"),
    ]
    checks += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in STG_REQUIRED]
    checks += [
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
        gxe.ExpectColumnValuesToBeInSet(column="scene", value_set=SCENES),
        gxe.ExpectColumnValuesToBeUnique(column="impression_id"),
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
        gxe.ExpectColumnValuesToBeInSet(column="reject_reason", value_set=REJECT_REASONS),
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
            column_set=FEATURE_TABLE_REQUIRED[name], exact_match=False
        ),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=keys),
    ]
    checks += [gxe.ExpectColumnValuesToNotBeNull(column=k) for k in keys]
    checks += _history_feature_checks(columns)
    checks += [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="date", column_B=c, or_equal=False, ignore_row_if="either_value_is_missing"
        )
        for c in LAST_HIST_DATES
        if c in columns
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
        gxe.ExpectTableColumnsToMatchSet(column_set=TRAINING_REQUIRED, exact_match=False),
        # One row per staged impression.
        gxe.ExpectTableRowCountToEqual(value={"$PARAMETER": "stg_impressions_row_count"}),
        # A deleted partition directory shows up as a missing day.
        gxe.ExpectColumnDistinctValuesToEqualSet(
            column="date", value_set={"$PARAMETER": "stg_impressions_dates"}
        ),
        gxe.ExpectColumnValuesToBeUnique(column="impression_id"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
        gxe.ExpectColumnValuesToBeInSet(column="scene", value_set=SCENES),
    ]
    checks += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in STG_REQUIRED]
    checks += [
        gxe.ExpectColumnMeanToBeBetween(
            column="label", min_value=low, max_value=high, row_condition=Column("scene") == s
        )
        for s in scenes
    ]
    # Ranges are the feature tables' suites' job; here: nothing the trainer reads is null.
    checks += _history_feature_checks(columns, ranges=False)
    checks += [_not_null(c) for c in DEEP_FEATURES + TEXT_COLUMNS]
    checks += [
        gxe.ExpectColumnValueLengthsToBeBetween(column=c, min_value=1, mostly=min_text_rate)
        for c in schema.ITEM_TEXT_COLUMNS
    ]
    # Point in time: a row dated D may only use history from days < D.
    checks += [
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="date", column_B=c, or_equal=False, ignore_row_if="either_value_is_missing"
        )
        for c in LAST_HIST_DATES
    ]
    return _suite("training_samples", checks)
