"""Read `training_samples`, split it by time and stream it as model-ready batches.

Nothing holds the table in memory. Fitting (scalers, id vocabularies, scene index, training-day
counts for the cold-start buckets) is one streaming pass over the training days; training reads the
training days' files in a seeded order through a bounded shuffle buffer; evaluation and `predict`
stream too and keep only what the metrics need (label, score, scene, user key, cold buckets).
Everything fitted here comes from the training days only.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from m2ctr.schema import (
    COLD_KEYS,
    DENSE_COLUMNS,
    FLAG_COLUMNS,
    HISTORY_COUNTS,
    HISTORY_FAMILIES,
    HISTORY_KEYS,
    ID_COLUMNS,
    KEY_COLUMNS,
    LOG_COLUMNS,
    TEXT_COLUMNS,
    ZERO,
    cold_bucket,
)

if TYPE_CHECKING:
    from .artifacts import RunDir


class TrainerError(Exception):
    """A problem with the user's input; the CLI prints it as one line, no traceback."""


REQUIRED_COLUMNS = (*KEY_COLUMNS, *DENSE_COLUMNS)
# what the text side is fitted on: ids, texts and the point-in-time counts of the cold buckets
TEXT_FIT_COLUMNS = (*ID_COLUMNS, *TEXT_COLUMNS, *HISTORY_COUNTS.values())
NEW_ID = 0  # the id row of a user or item without history (Preprocessor, new_ids on)


def stable_hash(values) -> np.ndarray:
    """uint64 hash of each string, the same in every process (Python's hash() is salted)."""
    return pd.util.hash_array(np.asarray(values, dtype=object))


def _numpy(col: pa.Array | pa.ChunkedArray, fill, dtype) -> np.ndarray:
    if col.null_count:
        col = pc.fill_null(col, fill)
    return col.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _strings(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(col.cast(pa.string()), "").to_numpy(zero_copy_only=False)


def history_bucket(batch: pa.RecordBatch | pa.Table, side: str) -> np.ndarray:
    """The point-in-time cold-start bucket of each row's user or item: its impressions on the days
    before the row's day, as training_samples and the serving snapshot give them."""
    return cold_bucket(_numpy(batch.column(HISTORY_COUNTS[side]), 0, np.int64))


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
            day = ds.get_partition_keys(frag.partition_expression).get("date")
            if day is None:
                raise TrainerError(f"{frag.path} is not under a date=YYYY-MM-DD/ partition")
            self.files.setdefault(day, []).append(frag)
        for frags in self.files.values():
            frags.sort(key=lambda f: f.path)
        self.days = sorted(self.files)

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

    @staticmethod
    def count_rows(fragments: Iterable[ds.Fragment]) -> int:
        return sum(f.count_rows() for f in fragments)

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


# ---------------------------------------------------------------------------- preprocessing


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
        self.scene_index = pd.Index(self.scenes)
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
            scene_raw = _numpy(batch.column("scene"), -1, np.int64)
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
        return cold_bucket(self.train_count(f"{side}_id", _strings(ids)))

    def no_history(self, scene: np.ndarray) -> np.ndarray:
        """[B, n_dense]: each row's standardised dense input had its keys no history (by scene index)."""
        return np.asarray(self.state["no_history"], dtype=np.float32)[scene]

    def transform(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        x = _dense_matrix(batch)
        x[:, self.log_mask] = np.log1p(np.maximum(x[:, self.log_mask], 0.0))
        x = (x - self.mean) / self.std
        scene_raw = _numpy(batch.column("scene"), -1, np.int64)
        scene = self.scene_index.get_indexer(scene_raw).astype(np.int64)
        if (scene < 0).any():
            unknown = sorted(set(scene_raw[scene < 0].tolist()))
            raise TrainerError(f"scene(s) {unknown} never appear on the training days (known: {self.scenes})")
        ids = {f: _strings(batch.column(f)) for f in ID_COLUMNS}
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
            "label": _numpy(batch.column("label"), 0, np.float32),
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
    return np.stack([_numpy(batch.column(c), 0, np.float32) for c in DENSE_COLUMNS], axis=1)


# ---------------------------------------------------------------------------- streams


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
                     buffer_rows: int, seed: int, epoch: int,
                     repeat: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Training batches of `fragments`, read in order, rows shuffled within a buffer of
    `buffer_rows` (memory grows with the buffer, never with the table); every row exactly once,
    in an order fixed by (seed, epoch, repeat)."""
    rng = np.random.default_rng([seed, epoch, repeat])
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

    for batch in table.read(fragments, features.columns):
        buffer.append(features(batch))
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
