"""Where the warehouse keeps its tables, resolved in one place.

dbt stores each model as ORC files in `<warehouse>/<schema>.db/<model>/` (profiles.yml): the
warehouse directory is `$CTR_WAREHOUSE_DIR` (default `data/warehouse`), the schema `$CTR_SCHEMA`
(default `m2ctr`). Everything that reads a table by path (the trainer, serving, expectations,
bench) asks here. The data-quality validation of a schema leaves its result beside its tables,
in `<schema>.db/_data_quality.json`, so a run can record the result of the very warehouse it read.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_WAREHOUSE_DIR = "data/warehouse"
DEFAULT_SCHEMA = "m2ctr"
DATA_QUALITY_FILE = "_data_quality.json"

# The dbt models read by path outside the warehouse (their names are their SQL files' names).
TRAINING_SAMPLES = "training_samples"
USER_SNAPSHOT = "user_features_snapshot"
ITEM_SNAPSHOT = "item_features_snapshot"
PAIR_SNAPSHOT = "user_item_snapshot"


def warehouse_dir(warehouse: str | os.PathLike | None = None) -> Path:
    """`warehouse` when given, else `$CTR_WAREHOUSE_DIR`, else data/warehouse."""
    return Path(warehouse or os.environ.get("CTR_WAREHOUSE_DIR") or DEFAULT_WAREHOUSE_DIR)


def schema_name(schema: str | None = None) -> str:
    """`schema` when given, else `$CTR_SCHEMA`, else m2ctr."""
    return schema or os.environ.get("CTR_SCHEMA") or DEFAULT_SCHEMA


def schema_dir(warehouse: str | os.PathLike | None = None, schema: str | None = None) -> Path:
    """`<warehouse>/<schema>.db`: the directory that holds one schema's tables."""
    return warehouse_dir(warehouse) / f"{schema_name(schema)}.db"


def table_path(model: str, warehouse: str | os.PathLike | None = None, schema: str | None = None) -> Path:
    """`<warehouse>/<schema>.db/<model>`: the directory of one dbt model's ORC files."""
    return schema_dir(warehouse, schema) / model


def schema_dir_of(table: str | os.PathLike) -> Path | None:
    """The `<schema>.db` directory a table path sits in, or None for a table outside a warehouse."""
    parent = Path(table).resolve().parent
    return parent if parent.name.endswith(".db") else None


def data_quality_path(schema_directory: str | os.PathLike) -> Path:
    """Where the validation of the schema in `schema_directory` writes its result."""
    return Path(schema_directory) / DATA_QUALITY_FILE
