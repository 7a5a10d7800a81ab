"""The unique-text tables: per side, one row per unique raw text, however many rows show it.

A text's key is its side's raw fields as read, joined by an unprintable separator, so two rows
share a table row exactly when their fields are equal. A table holds named blocks (numpy arrays
with one row per key, filled by `embeddings.blocks`) and a `version` that changes whenever its
rows do (the device copies of `embeddings.devices` follow it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SEP = "\x1f"  # joins the raw fields of one side into the key of its text


def raw_keys(batch: pa.RecordBatch | pa.Table, columns) -> pa.Array:
    """One string per row: the side's raw text fields joined (nulls as empty)."""
    missing = [c for c in columns if c not in batch.schema.names]
    if missing:
        raise KeyError(f"text column(s) {missing} missing from the batch (columns: {batch.schema.names})")
    parts = [pc.fill_null(batch.column(c).cast(pa.string()), "") for c in columns]
    out = pc.binary_join_element_wise(*parts, SEP)
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def key_fields(key: str) -> list[str]:
    """The raw fields a key was joined from."""
    return key.split(SEP)


class TextTable:
    """The unique texts of one side, in order of arrival, with their rows of each block.

    Rows before `pinned` (the run's own texts) stay; rows added later (texts a service meets) can be
    trimmed to a bound, least recently used first."""

    def __init__(self):
        self.index = pd.Index([], dtype=object)
        self.blocks: dict[str, list[np.ndarray]] = {}
        self.version = 0
        self.pinned = 0
        self.last_used = np.zeros(0, np.int64)
        self.clock = 0
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self.index)

    def lookup(self, keys: pa.Array) -> np.ndarray:
        """The row of each key, -1 where the table does not hold it."""
        # an object Index as the target: a bare array would first be inferred as pandas' string
        # dtype and cast back, half the look-up's time
        idx = self.index.get_indexer(pd.Index(keys.to_numpy(zero_copy_only=False), dtype=object))
        self.clock += 1
        self.last_used[idx[idx >= 0]] = self.clock
        return idx

    def count(self, idx: np.ndarray) -> None:
        """Count the rows whose text the table already held (hits) and those it did not."""
        self.hits += int((idx >= 0).sum())
        self.misses += int((idx < 0).sum())

    def append(self, keys: list[str], rows: dict[str, np.ndarray]) -> None:
        self.index = self.index.append(pd.Index(keys, dtype=object))
        for name, block in rows.items():
            self.blocks.setdefault(name, []).append(block)
        self.last_used = np.r_[self.last_used, np.full(len(keys), self.clock, np.int64)]
        self.version += 1

    def trim(self, limit: int) -> int:
        """Keep at most `limit` rows after the pinned ones: when over, drop the least recently used
        down to 3/4 of it (so that trimming, a copy of the tables, is rare). Returns rows dropped."""
        added = len(self) - self.pinned
        if added <= limit:
            return 0
        oldest_first = np.argsort(self.last_used[self.pinned:], kind="stable")
        drop = self.pinned + oldest_first[: added - limit * 3 // 4]
        keep = np.setdiff1d(np.arange(len(self)), drop)
        self.index = self.index[keep]
        self.blocks = {name: [self.block(name)[keep]] for name in self.blocks}
        self.last_used = self.last_used[keep]
        self.version += 1
        return len(drop)

    def block(self, name: str) -> np.ndarray:
        parts = self.blocks[name]
        if len(parts) > 1:
            parts[:] = [np.concatenate(parts)]
        return parts[0]

    def stats(self) -> dict:
        seen = self.hits + self.misses
        return {"texts": len(self), "run_texts": self.pinned, "added_texts": len(self) - self.pinned,
                "hits": self.hits, "misses": self.misses, "hit_rate": self.hits / seen if seen else None}
