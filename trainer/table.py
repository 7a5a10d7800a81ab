"""Read `training_samples` and split it by time.

`Table` reads the table file by file and day by day, in a stable order; nothing holds it in
memory. `split_days` gives the last days to test and validation and the rest to training. The
column lists the trainer reads, and `TrainerError`, the error for bad input, are here too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from m2ctr.schema import (
    DENSE_COLUMNS,
    HISTORY_COUNTS,
    ID_COLUMNS,
    KEY_COLUMNS,
    TEXT_COLUMNS,
    cold_bucket,
)


class TrainerError(Exception):
    """A problem with the user's input; the CLI prints it as one line, no traceback."""


REQUIRED_COLUMNS = (*KEY_COLUMNS, *DENSE_COLUMNS)
# what the text side is fitted on: ids, texts and the point-in-time counts of the cold buckets
TEXT_FIT_COLUMNS = (*ID_COLUMNS, *TEXT_COLUMNS, *HISTORY_COUNTS.values())


def stable_hash(values) -> np.ndarray:
    """uint64 hash of each string, the same in every process (Python's hash() is salted)."""
    # categorize=False gives the same hashes without factorizing first: about 9x faster on a
    # request's 100 ids, and faster on a million ids of 70,000 distinct values too
    return pd.util.hash_array(np.asarray(values, dtype=object), categorize=False)


def as_numpy(col: pa.Array | pa.ChunkedArray, fill, dtype) -> np.ndarray:
    """A column as a numpy array of `dtype`, nulls as `fill`."""
    if col.null_count:
        col = pc.fill_null(col, fill)
    return col.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def as_strings(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column as a numpy array of strings, nulls as ""."""
    return pc.fill_null(col.cast(pa.string()), "").to_numpy(zero_copy_only=False)


def history_bucket(batch: pa.RecordBatch | pa.Table, side: str) -> np.ndarray:
    """The point-in-time cold-start bucket of each row's user or item: its impressions on the days
    before the row's day, as training_samples and the serving snapshot give them."""
    return cold_bucket(as_numpy(batch.column(HISTORY_COUNTS[side]), 0, np.int64))


# ---------------------------------------------------------------------------- table


class Table:
    """A hive-partitioned (`date=YYYY-MM-DD/`) ORC directory, read file by file."""

    def __init__(self, path: str | os.PathLike, need_text: bool = False):
        self.path = Path(path)
        if not self.path.exists():
            raise TrainerError(
                f"table not found: {self.path} (build the warehouse with `make features` "
                "or pass --table DIR)"
            )
        part = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
        try:
            self.dataset = ds.dataset(str(self.path), format="orc", partitioning=part)
        except (pa.ArrowInvalid, OSError) as e:
            raise TrainerError(f"cannot read {self.path} as an ORC table: {e}") from None
        if not self.dataset.files:
            raise TrainerError(f"table {self.path} holds no ORC files")
        names = set(self.dataset.schema.names)
        required = (*REQUIRED_COLUMNS, *(TEXT_COLUMNS if need_text else ()))
        missing = [c for c in required if c not in names]
        if missing:
            raise TrainerError(f"table {self.path} lacks required columns: {', '.join(missing)}")
        self.files: dict[str, list[ds.Fragment]] = {}
        for frag in self.dataset.get_fragments():
            day = self.day_of(frag)
            if day is None:
                raise TrainerError(f"{frag.path} is not under a date=YYYY-MM-DD/ partition")
            self.files.setdefault(day, []).append(frag)
        for frags in self.files.values():
            frags.sort(key=lambda f: f.path)
        self.days = sorted(self.files)

    @staticmethod
    def day_of(fragment: ds.Fragment) -> str | None:
        """The day of a file: its `date=` partition."""
        return ds.get_partition_keys(fragment.partition_expression).get("date")

    def fragments(self, days: Iterable[str]) -> list[ds.Fragment]:
        """The files of `days` in a stable order (by day, then path)."""
        return [f for day in sorted(days) for f in self.files.get(day, [])]

    def read(self, fragments: Iterable[ds.Fragment], columns: Iterable[str],
             batch_size: int = 65536) -> Iterator[pa.RecordBatch]:
        columns = list(dict.fromkeys([c for c in columns if c != "date"]))
        for frag in fragments:
            for batch in frag.to_batches(columns=columns, batch_size=batch_size):
                if batch.num_rows:
                    yield batch

    @classmethod
    def count_rows(cls, fragments: Iterable[ds.Fragment], day_shares: dict[str, float] | None = None) -> int:
        """Rows of `fragments`; a day in `day_shares` counts its share of them (what a reader that
        keeps that share, or reads its rows that many times, yields, in expectation)."""
        shares = day_shares or {}
        return sum(round(shares.get(cls.day_of(f), 1.0) * f.count_rows()) for f in fragments)

    def batches(self, days: Iterable[str], columns: Iterable[str],
                batch_size: int = 65536) -> Iterator[pa.RecordBatch]:
        """Record batches of the given days in a stable order (by day, then file)."""
        yield from self.read(self.fragments(days), columns, batch_size)


SPLIT_PARTS = ("train", "val", "test")  # a split holds the days of each part as `<part>_days`
EVAL_PARTS = ("val", "test")  # the parts scored after training: a section of metrics.json each


def split_days(days: list[str], val_days: int, test_days: int) -> dict[str, list[str]]:
    """Last `test_days` days test, the `val_days` before them validation, the rest train."""
    if val_days < 1 or test_days < 1:
        raise TrainerError("--val-days and --test-days must be at least 1")
    if len(days) < val_days + test_days + 1:
        raise TrainerError(
            f"empty split: {val_days} validation + {test_days} test days leave no training "
            f"day; the table has {len(days)} day(s): {', '.join(days) or 'none'}"
        )
    n_train = len(days) - val_days - test_days
    return {
        "train_days": days[:n_train],
        "val_days": days[n_train : n_train + val_days],
        "test_days": days[n_train + val_days :],
    }
