"""The facts of the AntM2C log format and of the training table, defined once.

Python code imports these names; the dbt project reads the same lists from the `vars` of
`warehouse/dbt_project.yml`, and `tests/test_schema.py` asserts that the two agree. Adding a deep
feature or a text column is an edit here and in those vars, nothing else.
"""

from __future__ import annotations

import numpy as np

# -- raw input ------------------------------------------------------------------------------------

SCENES = (0, 1, 2, 3, 4)  # scenes A..E; in AntM2C the scene is the item type
N_DEEP_FEATURES = 27
DEEP_FEATURES = tuple(f"deep_features_{i}" for i in range(N_DEEP_FEATURES))
ID_COLUMNS = ("user_id", "item_id")
USER_TEXT_COLUMNS = ("bill_entity_seq", "service_entity_seq", "query_entity_seq")
ITEM_TEXT_COLUMNS = ("item_entity_names", "item_title")
TEXT_COLUMNS = (*USER_TEXT_COLUMNS, *ITEM_TEXT_COLUMNS)  # in raw column order
# Text columns that hold free text (split into words); every other text column is a comma list of entities.
TITLE_COLUMNS = ("item_title",)
# The column order of a headerless file; a file with a header may name any subset of the deep features.
RAW_COLUMNS = ("user_id", "item_id", "log_time", "label", *TEXT_COLUMNS, "scene", *DEEP_FEATURES)
RAW_REQUIRED = tuple(c for c in RAW_COLUMNS if c not in DEEP_FEATURES)

# Why a raw record is quarantined, in the order the checks are applied (the first failing one wins).
REJECT_REASONS = (
    "too_few_fields",
    "too_many_fields",
    "missing_user_id",
    "missing_item_id",
    "bad_log_time",
    "bad_label",
    "bad_scene",
)

# -- training_samples feature families ------------------------------------------------------------

KEY_COLUMNS = ("impression_id", "user_id", "item_id", "scene", "label")


def side_features(prefix: str) -> tuple[str, ...]:
    """The history features of one side (`u` user, `i` item), in table order."""
    return (
        f"{prefix}_imp_7d", f"{prefix}_clk_7d", f"{prefix}_ctr_7d", f"{prefix}_ctr_7d_smooth",
        f"{prefix}_imp_cum", f"{prefix}_clk_cum", f"{prefix}_ctr_cum", f"{prefix}_ctr_cum_smooth",
        *(f"{prefix}_imp_cum_s{s}" for s in SCENES),
        *(f"{prefix}_clk_cum_s{s}" for s in SCENES),
        f"{prefix}_days_since_first", f"{prefix}_has_history",
    )


USER_FEATURES = side_features("u")
ITEM_FEATURES = side_features("i")
PAIR_FEATURES = ("ui_imp_hist", "ui_clk_hist", "ui_has_history")
HISTORY_FEATURES = (*USER_FEATURES, *ITEM_FEATURES, *PAIR_FEATURES)
LAST_HIST_DATES = ("u_last_hist_date", "i_last_hist_date", "ui_last_hist_date")
# The numeric model input, in a fixed order: history features, then the deep features.
DENSE_COLUMNS = (*HISTORY_FEATURES, *DEEP_FEATURES)

# Families by name, so every check and transform follows a new column without an edit.
COUNT_COLUMNS = tuple(c for c in HISTORY_FEATURES if "_imp" in c or "_clk" in c)
CTR_COLUMNS = tuple(c for c in HISTORY_FEATURES if "_ctr" in c)
FLAG_COLUMNS = tuple(c for c in HISTORY_FEATURES if c.endswith("_has_history"))
DAYS_COLUMNS = tuple(c for c in HISTORY_FEATURES if "days_since" in c)
# Heavy-tailed counts are log1p'd before standardisation; 0/1 flags are left as they are.
LOG_COLUMNS = (*COUNT_COLUMNS, *DAYS_COLUMNS)


def clicks_impressions_pairs(columns) -> list[tuple[str, str]]:
    """(clicks, impressions) column pairs among `columns`: every `*_clk*` with its `*_imp*`."""
    names = set(columns)
    return [(c, c.replace("_clk", "_imp")) for c in columns
            if "_clk" in c and c.replace("_clk", "_imp") in names]


# -- cold-start buckets ---------------------------------------------------------------------------

# A user's (item's) impressions on the training days: 0 zero, 1..FEW_MAX few, more warm.
COLD_BUCKETS = ("zero", "few", "warm")
ZERO, FEW, WARM = range(len(COLD_BUCKETS))
FEW_MAX = 4


def cold_bucket(train_counts) -> np.ndarray:
    """Bucket index (ZERO, FEW, WARM) of each training-day impression count."""
    counts = np.asarray(train_counts)
    return np.where(counts <= 0, ZERO, np.where(counts <= FEW_MAX, FEW, WARM)).astype(np.int64)
