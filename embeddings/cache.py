"""On-disk vector cache: each unique text is encoded once per (model id, backend, pooling, token cap).

Layout: ``<cache_dir>/<model id>/<backend>/<pooling>/tokens-<max_tokens>/part-<uuid>.parquet``
with columns ``model_id``, ``backend``, ``pooling``, ``max_tokens``, ``text_sha1`` and ``vector``
(fixed-size list of float32). Backends give slightly different vectors (int8, bf16, static), and
a text longer than the cap is cut where the cap says, so each has its own directory and a run
never mixes vectors of two backends or of two caps.
Parts written before the cap was part of the key lie directly under ``<pooling>/``; the cap was a
fixed 64 then, so they are read as the 64-token cache (read only: never compacted or removed).
Every call that encodes something appends one part file (written whole, `m2ctr.atomic`, so a
concurrent reader never sees half a file); many parts are compacted on load.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embeddings.text import text_key
from m2ctr.atomic import atomic_path

COMPACT_AFTER_PARTS = 64
# The only token cap a run had before the cap was part of the cache key.
UNKEYED_MAX_TOKENS = 64


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _read(parts: list[Path]) -> tuple[list[str], np.ndarray]:
    """(text keys, vectors [n, dim]) of the given part files."""
    if not parts:
        return [], np.empty((0, 0), dtype=np.float32)
    table = pq.read_table(parts, columns=["text_sha1", "vector"])
    vectors = table.column("vector").combine_chunks()
    return table.column("text_sha1").to_pylist(), vectors.flatten().to_numpy().reshape(len(table), vectors.type.list_size)


class CachedEncoder:
    """Wraps an encoder: ``vectors(texts)`` returns one row per text, encoding only texts
    seen neither in this process nor in the cache directory. ``n_encoded`` counts texts that
    went through the model, ``encode_s`` the seconds they took, ``n_cache_hits`` the texts read
    back from disk."""

    def __init__(self, encoder, cache_dir: str | Path | None):
        self.encoder = encoder
        pooling_dir = (Path(cache_dir) / _safe(encoder.model_id) / _safe(encoder.backend) / _safe(encoder.pooling)
                       if cache_dir else None)
        self.dir = pooling_dir / f"tokens-{int(encoder.max_tokens)}" if pooling_dir else None
        self._unkeyed = pooling_dir if encoder.max_tokens == UNKEYED_MAX_TOKENS else None
        self._memory: dict[str, np.ndarray] = {}
        self._on_disk: dict[str, np.ndarray] | None = None
        self.n_encoded = 0
        self.encode_s = 0.0
        self.n_cache_hits = 0

    def _disk(self) -> dict[str, np.ndarray]:
        if self._on_disk is None:
            unkeyed = sorted(self._unkeyed.glob("part-*.parquet")) if self._unkeyed else []
            parts = sorted(self.dir.glob("part-*.parquet")) if self.dir and self.dir.is_dir() else []
            keys, matrix = _read(parts)
            self._on_disk = dict(zip(*_read(unkeyed))) | dict(zip(keys, matrix))
            if len(parts) > COMPACT_AFTER_PARTS:
                self._write(keys, matrix)
                for part in parts:
                    part.unlink(missing_ok=True)
        return self._on_disk

    def _write(self, keys: list[str], matrix: np.ndarray) -> None:
        if self.dir is None or not keys:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        dim = matrix.shape[1]
        table = pa.table({
            "model_id": pa.array([self.encoder.model_id] * len(keys)),
            "backend": pa.array([self.encoder.backend] * len(keys)),
            "pooling": pa.array([self.encoder.pooling] * len(keys)),
            "max_tokens": pa.array([int(self.encoder.max_tokens)] * len(keys), pa.int32()),
            "text_sha1": pa.array(keys),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(matrix.astype(np.float32).ravel()), dim),
        })
        with atomic_path(self.dir / f"part-{uuid.uuid4().hex}.parquet") as tmp:
            pq.write_table(table, tmp)

    def vectors(self, texts: list[str]) -> np.ndarray:
        keys = [text_key(text) for text in texts]
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts):
            if key in self._memory or key in missing:
                continue
            found = self._disk().get(key)
            if found is not None:
                self._memory[key] = found
                self.n_cache_hits += 1
            else:
                missing[key] = text
        if missing:
            t0 = time.perf_counter()
            encoded = self.encoder.encode(list(missing.values()))
            self.encode_s += time.perf_counter() - t0
            self.n_encoded += len(missing)
            self._memory.update(zip(missing, encoded))
            self._write(list(missing), encoded)
        if not keys:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([self._memory[key] for key in keys])

    def forget(self) -> None:
        """Drop the vectors held in memory (the disk cache keeps them)."""
        self._memory.clear()

    @property
    def dim(self) -> int:
        if self._memory:
            return len(next(iter(self._memory.values())))
        return self.encoder.dim
