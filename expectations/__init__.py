"""Great Expectations suites over the warehouse; `python -m expectations validate`."""

import os

# Before any module of the package imports great_expectations: no usage reporting.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

# In run order: training_samples is compared to stg_impressions, stg_impressions to raw.
SUITE_NAMES = [
    "raw",
    "stg_impressions",
    "quarantine_impressions",
    "user_features_daily",
    "item_features_daily",
    "user_item_history",
    "training_samples",
]
