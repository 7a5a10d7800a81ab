"""Stream the table as model-ready batches: shuffled for training, in order for scoring.

Training reads the training days' files in a seeded order through a bounded shuffle buffer, so
memory grows with the buffer, never with the table; evaluation and `predict` stream the days in
the table's order and keep only what the metrics need (label, score, scene, user key, cold
buckets). `Features` turns each record batch into the model's arrays.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from m2ctr.schema import HISTORY_KEYS, TEXT_COLUMNS

from .preprocessing import Preprocessor
from .table import REQUIRED_COLUMNS, Table


class Features:
    """Record batches -> model-ready numpy batches: the preprocessor, plus text indices."""

    def __init__(self, prep: Preprocessor, featurizer=None):
        self.prep, self.featurizer = prep, featurizer
        self.columns = [*REQUIRED_COLUMNS, *(TEXT_COLUMNS if featurizer is not None else ())]

    def __call__(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        arrays = self.prep.transform(batch)
        if self.featurizer is not None:
            cold = {side: arrays[key] for side, key in HISTORY_KEYS.items()}
            arrays.update(self.featurizer.transform(batch, cold))
        return arrays


def _concat(parts: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def training_shard(table: Table, days: list[str], seed: int, epoch: int, rank: int = 0,
                   world: int = 1) -> list[ds.Fragment]:
    """This rank's training files for one epoch: the files of `days` in a (seed, epoch)-determined
    order, every world-th one from position `rank`, so ranks never share a row."""
    frags = table.fragments(days)
    order = np.random.default_rng([seed, epoch]).permutation(len(frags))
    return [frags[i] for i in order][rank::world]


def shuffled_batches(table: Table, fragments: list[ds.Fragment], features: Features, batch_size: int,
                     buffer_rows: int, seed: int, epoch: int, repeat: int = 0,
                     day_shares: dict[str, float] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Training batches of `fragments`, read in order, rows shuffled within a buffer of
    `buffer_rows` (memory grows with the buffer, never with the table); every row once, in an
    order fixed by (seed, epoch, repeat). A day in `day_shares` gives each of its rows that many
    times, into the same buffer (a whole number above 1: a refresh's new days), or only that share
    of its rows, a different draw each epoch (below 1)."""
    rng = np.random.default_rng([seed, epoch, repeat])
    draw = np.random.default_rng([seed, epoch, repeat, 2])
    buffer: list[dict] = []
    held = 0
    carry: dict | None = None

    def drain(parts: list[dict]):
        nonlocal carry
        block = _concat(([carry] if carry else []) + parts)
        order = rng.permutation(len(block["label"]))
        n_full = len(order) // batch_size * batch_size
        for start in range(0, n_full, batch_size):
            take = order[start : start + batch_size]
            yield {k: v[take] for k, v in block.items()}
        rest = order[n_full:]
        carry = {k: v[rest] for k, v in block.items()} if len(rest) else None

    for fragment in fragments:
        share = (day_shares or {}).get(Table.day_of(fragment), 1.0)
        for batch in table.read([fragment], features.columns):
            if share < 1.0:
                batch = batch.filter(pa.array(draw.random(batch.num_rows) < share))
            if not batch.num_rows:
                continue
            arrays = features(batch)
            for _ in range(max(1, int(share))):
                buffer.append(arrays)
                held += batch.num_rows
            if held >= buffer_rows:
                yield from drain(buffer)
                buffer, held = [], 0
    if buffer:
        yield from drain(buffer)
    if carry is not None:
        yield carry


def ordered_batches(table: Table, days: list[str], features: Features, rank: int = 0,
                    world: int = 1, batch_size: int = 65536) -> Iterator[dict[str, np.ndarray]]:
    """Batches of `days` in the table's stable order (every world-th file for rank r)."""
    for batch in table.read(table.fragments(days)[rank::world], features.columns, batch_size):
        yield features(batch)
