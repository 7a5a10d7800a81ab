"""Fit the preprocessing on the training days, and apply it to record batches.

`Preprocessor` holds the scalers, id vocabularies, scene index and training-day counts (for the
cold-start buckets), fitted in one streaming pass over the training days and from them only;
`transform` turns a record batch of any day into the model's numpy arrays. A daily refresh
`extend`s it with the days since. It is saved in a run directory as JSON and Parquet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from m2ctr.schema import (
    COLD_KEYS,
    DENSE_COLUMNS,
    FLAG_COLUMNS,
    HISTORY_FAMILIES,
    HISTORY_KEYS,
    ID_COLUMNS,
    LOG_COLUMNS,
    ZERO,
    cold_bucket,
)

from .table import TrainerError, as_numpy, as_strings, history_bucket, stable_hash

if TYPE_CHECKING:
    from .artifacts import RunDir


NEW_ID = 0  # the id row of a user or item without history (Preprocessor, new_ids on)


class Preprocessor:
    """Scalers, id vocabularies, scene index and training-day counts, fitted on train only.

    An id seen at least `min_count` times on the training days gets its own row (1..V, at most
    `max_vocab` of the most frequent); every other id, including ids first seen at validation or
    test time, is hashed into one of `hash_buckets` shared rows after the vocabulary.

    With `new_ids` on, an id the model cannot know reads row 0 instead, one learned "new id" row
    per field: an id without history as of its row's day (point-in-time bucket zero) and an id
    never seen on the training days. A training row on an item's first day then meets the id input
    a new item meets at test time, rather than an embedding trained on that very row, and the
    cold-start simulation (trainer.coldstart) sends its dropped ids there too.
    """

    def __init__(self, state: dict, vocab: dict[str, list[str]], counts: dict[str, tuple[list, list]]):
        self.state = state
        self.new_ids = bool(state.get("new_ids", False))
        self.mean = np.asarray(state["mean"], dtype=np.float32)
        self.std = np.asarray(state["std"], dtype=np.float32)
        self.log_mask = np.isin(state["dense_columns"], state["log_columns"])
        self.scenes = list(state["scenes"])
        self._scene_values = np.asarray(self.scenes, dtype=np.int64)  # sorted: `fit` writes them so
        self.hash_buckets = int(state["hash_buckets"])
        self.vocab = {f: pd.Index(v, dtype=object) for f, v in vocab.items()}
        self.counts = {f: (pd.Index(ids, dtype=object), np.asarray(n, np.int64)) for f, (ids, n) in counts.items()}

    # -- fitting

    @classmethod
    def fit(cls, batches: Iterable[pa.RecordBatch], min_count: int = 2, max_vocab: int = 200_000,
            hash_buckets: int = 4096, new_ids: bool = False) -> Preprocessor:
        counts = {f: Counter() for f in ID_COLUMNS}
        scenes: Counter = Counter()
        n = 0
        s1 = np.zeros(len(DENSE_COLUMNS))
        s2 = np.zeros(len(DENSE_COLUMNS))
        log_mask = np.isin(DENSE_COLUMNS, LOG_COLUMNS)
        # per scene: sums and rows of each history feature over the rows whose key has no history
        empty_sum: dict[int, np.ndarray] = {}
        empty_n: dict[int, np.ndarray] = {}
        families = [(np.isin(DENSE_COLUMNS, cols), DENSE_COLUMNS.index(flag))
                    for cols, flag in HISTORY_FAMILIES.values()]
        for batch in batches:
            _count_ids(batch, counts)
            vc = pc.value_counts(batch.column("scene"))
            scenes.update(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))
            x = _dense_matrix(batch).astype(np.float64)
            x[:, log_mask] = np.log1p(np.maximum(x[:, log_mask], 0.0))
            s1 += x.sum(0)
            s2 += (x * x).sum(0)
            n += batch.num_rows
            scene_raw = as_numpy(batch.column("scene"), -1, np.int64)
            for s in np.unique(scene_raw):
                at = scene_raw == s
                sums = empty_sum.setdefault(int(s), np.zeros(len(DENSE_COLUMNS)))
                rows = empty_n.setdefault(int(s), np.zeros(len(DENSE_COLUMNS)))
                for cols, flag in families:
                    none = at & (x[:, flag] == 0)
                    sums[cols] += x[none][:, cols].sum(0)
                    rows[cols] += none.sum()
        if n == 0:
            raise TrainerError("empty split: the training days hold no rows")
        scenes.pop(None, None)
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
        std[std < 1e-6] = 1.0
        flags = np.isin(DENSE_COLUMNS, FLAG_COLUMNS)
        mean[flags], std[flags] = 0.0, 1.0
        vocab = {f: _frequent(counts[f], min_count, max_vocab) for f in ID_COLUMNS}
        # The standardised value each history feature has on a row whose key has no history, per
        # scene (the smoothed CTRs are the scene's prior there): what the cold-start simulation
        # writes when it masks a side's history. 0 before standardisation where no such row exists.
        no_history = []
        for s in sorted(scenes):
            rows = empty_n.get(int(s), np.zeros(len(DENSE_COLUMNS)))
            raw = np.where(rows > 0, empty_sum.get(int(s), 0.0) / np.maximum(rows, 1), 0.0)
            no_history.append(((raw - mean) / std).tolist())
        state = {
            "dense_columns": list(DENSE_COLUMNS),
            "log_columns": list(LOG_COLUMNS),
            "mean": mean.tolist(),
            "std": std.tolist(),
            "scenes": sorted(int(s) for s in scenes),
            "scene_counts": [scenes[s] for s in sorted(scenes)],
            "hash_buckets": hash_buckets,
            "min_count": min_count,
            "new_ids": new_ids,
            "no_history": no_history,
            "n_train_rows": n,
        }
        return cls(state, vocab, {f: (list(c), list(c.values())) for f, c in counts.items()})

    def extend(self, batches: Iterable[pa.RecordBatch], max_vocab: int) -> Preprocessor:
        """This preprocessing with the rows of `batches` (days it has not counted) added to its
        training-day counts, and each id vocabulary grown by the ids that now reach `min_count`,
        appended after the ids it had (most frequent first, up to `max_vocab` in all): the
        vocabularies and counts a fit on all of those days would have, in an order that keeps every
        earlier id's row. Scalers, scenes and the rest stay as fitted."""
        counts = {f: Counter(dict(zip(index, n.tolist()))) for f, (index, n) in self.counts.items()}
        n = sum(_count_ids(batch, counts) for batch in batches)
        vocab = {}
        for f in ID_COLUMNS:
            known = set(self.vocab[f])
            grown = _frequent({k: c for k, c in counts[f].items() if k not in known}, self.state["min_count"],
                              max(max_vocab - len(known), 0))
            vocab[f] = [*self.vocab[f], *grown]
        state = {**self.state, "extended_rows": self.state.get("extended_rows", 0) + n}
        return Preprocessor(state, vocab, {f: (list(c), list(c.values())) for f, c in counts.items()})

    def id_rows_before(self, earlier: Preprocessor) -> np.ndarray:
        """For each row of this preprocessing's id table (all fields, in the model's order), the row
        of `earlier`'s table it continues: the same row for the new-id row, an earlier vocabulary id
        and a hash bucket; for an id the vocabulary gained, the row `earlier` gave it (the new-id row
        for an id it never counted, when new ids are on; else its hash bucket)."""
        rows, offset = [], 0
        for f, card in zip(ID_COLUMNS, earlier.id_cardinalities):
            old_v = len(earlier.vocab[f])
            gained = np.asarray(self.vocab[f][old_v:], dtype=object)
            before = earlier.encode_ids(f, gained) if len(gained) else np.zeros(0, np.int64)
            if earlier.new_ids and len(gained):
                before[earlier.train_count(f, gained) == 0] = NEW_ID
            rows.append(offset + np.concatenate([np.arange(1 + old_v), before,
                                                 1 + old_v + np.arange(self.hash_buckets)]))
            offset += card
        return np.concatenate(rows)

    # -- shape of the model input

    @property
    def id_cardinalities(self) -> list[int]:
        # row 0 the new-id row (trained only with new_ids on), 1..V vocabulary, then the hash buckets
        return [1 + len(self.vocab[f]) + self.hash_buckets for f in ID_COLUMNS]

    @property
    def n_dense(self) -> int:
        return len(self.state["dense_columns"])

    # -- transforming

    def encode_ids(self, field: str, values: np.ndarray) -> np.ndarray:
        # an Index probes the table's hash faster than a bare object array does
        out = self.vocab[field].get_indexer(pd.Index(values, dtype=object)).astype(np.int64) + 1
        unseen = out == 0
        if unseen.any():
            base = 1 + len(self.vocab[field])
            out[unseen] = base + (stable_hash(values[unseen]) % np.uint64(self.hash_buckets)).astype(np.int64)
        return out

    def train_count(self, field: str, values: np.ndarray) -> np.ndarray:
        index, n = self.counts[field]
        at = index.get_indexer(pd.Index(values, dtype=object))
        return np.where(at >= 0, n[np.maximum(at, 0)] if len(n) else 0, 0)

    def cold(self, side: str, ids: pa.Array) -> np.ndarray:
        """Evaluation cold-start bucket (training-day count) of each id of one side."""
        return cold_bucket(self.train_count(f"{side}_id", as_strings(ids)))

    def scene_positions(self, scene_raw: np.ndarray) -> np.ndarray:
        """Each raw scene's index in `scenes`, -1 for a scene the training days never showed (a
        binary search: an Index look-up cost 0.15 ms of a 100-row request)."""
        at = np.minimum(np.searchsorted(self._scene_values, scene_raw), len(self.scenes) - 1)
        return np.where(self._scene_values[at] == scene_raw, at, -1)

    def no_history(self, scene: np.ndarray) -> np.ndarray:
        """[B, n_dense]: each row's standardised dense input had its keys no history (by scene index)."""
        return np.asarray(self.state["no_history"], dtype=np.float32)[scene]

    def transform(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        x = _dense_matrix(batch)
        x[:, self.log_mask] = np.log1p(np.maximum(x[:, self.log_mask], 0.0))
        x = (x - self.mean) / self.std
        scene_raw = as_numpy(batch.column("scene"), -1, np.int64)
        scene = self.scene_positions(scene_raw)
        if (scene < 0).any():
            unknown = sorted(set(scene_raw[scene < 0].tolist()))
            raise TrainerError(f"scene(s) {unknown} never appear on the training days (known: {self.scenes})")
        ids = {f: as_strings(batch.column(f)) for f in ID_COLUMNS}
        hist = {side: history_bucket(batch, side) for side in HISTORY_KEYS}
        train_counts = {f: self.train_count(f, ids[f]) for f in ID_COLUMNS}
        encoded = np.stack([self.encode_ids(f, ids[f]) for f in ID_COLUMNS], axis=1)
        if self.new_ids:
            for k, (f, side) in enumerate(zip(ID_COLUMNS, HISTORY_KEYS)):
                encoded[(hist[side] == ZERO) | (train_counts[f] == 0), k] = NEW_ID
        return {
            "ids": encoded,
            "dense": x.astype(np.float32, copy=False),
            "scene": scene,
            "label": as_numpy(batch.column("label"), 0, np.float32),
            # the model's point-in-time cold signal, and the evaluation buckets beside it
            **{HISTORY_KEYS[side]: b for side, b in hist.items()},
            **{COLD_KEYS[side]: cold_bucket(train_counts[f]) for f, side in zip(ID_COLUMNS, HISTORY_KEYS)},
            # GAUC groups by the user (hash buckets would merge users); a 64-bit key is enough
            "user_key": stable_hash(ids["user_id"]).view(np.int64),
        }

    # -- persistence (JSON and Parquet only: nothing is unpickled when a run is loaded)

    def save(self, run: RunDir) -> None:
        run.write_preprocessing(self.state)
        for f in ID_COLUMNS:
            run.write_id_table("vocab", f, {"id": pa.array(list(self.vocab[f]), pa.string())})
            index, n = self.counts[f]
            run.write_id_table("train_counts", f, {"id": pa.array(list(index), pa.string()), "train_count": n})

    @classmethod
    def load(cls, run: RunDir) -> Preprocessor:
        state = run.preprocessing()
        if state is None:
            raise TrainerError(f"{run.path} has no {run.PREPROCESSING}: not a neural run directory")
        vocab, counts = {}, {}
        for f in ID_COLUMNS:
            vocab[f] = run.id_table("vocab", f).column("id").to_pylist()
            t = run.id_table("train_counts", f)
            counts[f] = (t.column("id").to_pylist(), t.column("train_count").to_numpy())
        return cls(state, vocab, counts)


def _count_ids(batch: pa.RecordBatch, counts: dict[str, Counter]) -> int:
    """Add each id field's occurrences in `batch` to `counts`; returns its rows."""
    for f in ID_COLUMNS:
        vc = pc.value_counts(pc.fill_null(batch.column(f).cast(pa.string()), ""))
        counts[f].update(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))
    return batch.num_rows


def _frequent(counts: dict[str, int], min_count: int, limit: int) -> list[str]:
    """Ids seen at least `min_count` times, most frequent first (ties by id), at most `limit`."""
    frequent = sorted(((c, k) for k, c in counts.items() if c >= min_count and k != ""),
                      key=lambda ck: (-ck[0], ck[1]))[:limit]
    return [k for _, k in frequent]


def _dense_matrix(batch: pa.RecordBatch) -> np.ndarray:
    """[rows, DENSE_COLUMNS] float32, nulls as 0: one conversion of the whole block (a column at a
    time cost 0.7 ms of a 100-row request)."""
    block = batch.select(DENSE_COLUMNS)
    x = np.asarray(block.to_tensor(null_to_nan=True))
    if np.isnan(x).any():  # nulls (or NaNs of their own): fill the nulls alone, column by column
        columns = [pc.fill_null(c, 0) if c.null_count else c for c in block.columns]
        x = np.asarray(pa.RecordBatch.from_arrays(columns, names=block.schema.names).to_tensor())
    return x.astype(np.float32)
