"""The facts of the AntM2C log format and of the training table, defined once.

The lists the SQL needs too (scenes, the number of deep features, the text columns, the reject
reasons, the raw file glob, CSV options and log_time formats, the smoothing of the CTRs) are
declared once, in the `vars` of `warehouse/dbt_project.yml`, which the dbt macros read; this
module reads the same file: the checkout's, or the one an installed wheel carries under
`share/m2ctr/` (pyproject.toml ships it). Everything else here is derived from them, and every other
module imports from here. Adding a deep feature or a text column is an edit of those vars only.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import yaml

SHARED_DIR = "share/m2ctr"  # where a wheel carries its data files (pyproject.toml, data-files)


def find_shipped(name: str) -> Path:
    """A data file of the project (`name`, relative to the checkout's root): the checkout's, else
    the copy an installed wheel carries under share/m2ctr/ (by its file name)."""
    checkout = Path(__file__).resolve().parents[1] / name
    if checkout.is_file():
        return checkout
    installed_at = f"{SHARED_DIR}/{Path(name).name}"
    try:
        dist = metadata.distribution("m2ctr")
    except metadata.PackageNotFoundError:
        dist = None
    for f in (dist.files or []) if dist else []:
        if f.as_posix().endswith(installed_at):
            path = Path(dist.locate_file(f)).resolve()
            if path.is_file():
                return path
    raise ImportError(f"m2ctr: neither {checkout} nor an installed {installed_at} is there; "
                      "reinstall the m2ctr package")


def find_dbt_project() -> Path:
    """warehouse/dbt_project.yml of a source checkout, else the copy installed with the package."""
    return find_shipped("warehouse/dbt_project.yml")


DBT_PROJECT = find_dbt_project()
_VARS = yaml.safe_load(DBT_PROJECT.read_text())["vars"]

# -- raw input ------------------------------------------------------------------------------------

SCENES = tuple(int(s) for s in _VARS["scenes"])  # scenes A..E; in AntM2C the scene is the item type
N_DEEP_FEATURES = int(_VARS["n_deep_features"])
DEEP_FEATURES = tuple(f"deep_features_{i}" for i in range(N_DEEP_FEATURES))
ID_COLUMNS = ("user_id", "item_id")
# Text columns in raw column order. By name: item_* columns describe the item, the others the user;
# *_title columns hold free text (split into words), the others comma lists of entities.
TEXT_COLUMNS = tuple(_VARS["text_columns"])
USER_TEXT_COLUMNS = tuple(c for c in TEXT_COLUMNS if not c.startswith("item_"))
ITEM_TEXT_COLUMNS = tuple(c for c in TEXT_COLUMNS if c.startswith("item_"))
TITLE_COLUMNS = tuple(c for c in TEXT_COLUMNS if c.endswith("_title"))
# The column order of a headerless file; a file with a header may name any subset of the deep features.
RAW_COLUMNS = ("user_id", "item_id", "log_time", "label", *TEXT_COLUMNS, "scene", *DEEP_FEATURES)
RAW_REQUIRED = tuple(c for c in RAW_COLUMNS if c not in DEEP_FEATURES)

# The smoothed CTRs: (clicks + CTR_SMOOTHING_WEIGHT * prior) / (impressions + CTR_SMOOTHING_WEIGHT),
# the prior the row's scene's click rate over the days before the row, CTR_PRIOR_DEFAULT without any.
CTR_SMOOTHING_WEIGHT = float(_VARS["ctr_smoothing_weight"])
CTR_PRIOR_DEFAULT = float(_VARS["ctr_prior_default"])
# The short window of the *_7d features: the calendar days D - WINDOW_DAYS .. D - 1.
WINDOW_DAYS = int(_VARS["window_days"])

# How the raw files are found and read, the same for the build and the raw suite: the file-name
# glob (CTR_RAW_GLOB overrides it, as for the build), Spark's CSV reader options, and the Spark
# datetime patterns of log_time, tried in order.
RAW_GLOB = str(_VARS["raw_glob"])
RAW_CSV_OPTIONS = {str(k): str(v) for k, v in _VARS["raw_csv_options"].items()}
LOG_TIME_FORMATS = tuple(str(f) for f in _VARS["log_time_formats"])

# Why a raw record is quarantined, in the order the checks are applied (the first failing one wins).
REJECT_REASONS = tuple(_VARS["reject_reasons"])

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
# The history features of each key and the flag that says the key has any history.
HISTORY_FAMILIES = {"user": (USER_FEATURES, "u_has_history"), "item": (ITEM_FEATURES, "i_has_history"),
                    "pair": (PAIR_FEATURES, "ui_has_history")}
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


def cold_bucket(counts) -> np.ndarray:
    """Bucket index (ZERO, FEW, WARM) of each impression count."""
    counts = np.asarray(counts)
    return np.where(counts <= 0, ZERO, np.where(counts <= FEW_MAX, FEW, WARM)).astype(np.int64)


# Two uses of the same buckets. The *evaluation* buckets (`cold_user`, `cold_item`) count an id's
# impressions on the training days: they describe test rows against the training window. The
# *model* reads the point-in-time buckets (`hist_user`, `hist_item`): the row's own impressions on
# the days before its day, columns of training_samples and of the serving snapshot alike. A
# training row on an item's first day is then "zero", exactly as a new item at test time is.
HISTORY_COUNTS = {"user": "u_imp_cum", "item": "i_imp_cum"}
HISTORY_KEYS = {side: f"hist_{side}" for side in HISTORY_COUNTS}
COLD_KEYS = {side: f"cold_{side}" for side in HISTORY_COUNTS}
