"""Read `training_samples`, split it by time and turn it into model-ready arrays.

The table is read with pyarrow in record batches and every batch is reduced to
compact numpy arrays right away, so memory holds float32/int64 features, never a
wide frame of the whole table. Everything fitted here (scalers, id vocabularies,
scene index, cold-start counts) comes from the training days only.
"""

from __future__ import annotations

import json
import os
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds


class TrainerError(Exception):
    """A problem with the user's input; the CLI prints it as one line, no traceback."""


ID_FIELDS = ("user_id", "item_id")
TEXT_COLUMNS = (
    "bill_entity_seq",
    "service_entity_seq",
    "query_entity_seq",
    "item_entity_names",
    "item_title",
)
N_DEEP = 27
N_SCENE_COUNTS = 5  # the table carries per-scene history for scenes 0..4


def _side_columns(p: str) -> list[str]:
    return [
        f"{p}_imp_7d", f"{p}_clk_7d", f"{p}_ctr_7d", f"{p}_ctr_7d_smooth",
        f"{p}_imp_cum", f"{p}_clk_cum", f"{p}_ctr_cum", f"{p}_ctr_cum_smooth",
        *[f"{p}_imp_cum_s{s}" for s in range(N_SCENE_COUNTS)],
        *[f"{p}_clk_cum_s{s}" for s in range(N_SCENE_COUNTS)],
        f"{p}_days_since_first", f"{p}_has_history",
    ]


DENSE_COLUMNS = (
    _side_columns("u")
    + _side_columns("i")
    + ["ui_imp_hist", "ui_clk_hist", "ui_has_history"]
    + [f"deep_features_{k}" for k in range(N_DEEP)]
)
# Heavy-tailed counts are log1p'd before standardisation; 0/1 flags are left as they are.
LOG_COLUMNS = [c for c in DENSE_COLUMNS if "_imp" in c or "_clk" in c or "days_since" in c]
FLAG_COLUMNS = [c for c in DENSE_COLUMNS if c.endswith("_has_history")]
KEY_COLUMNS = ("impression_id", "user_id", "item_id", "scene", "label")
REQUIRED_COLUMNS = (*KEY_COLUMNS, *DENSE_COLUMNS)

COLD_NAMES = ("zero", "few", "warm")


def default_table_path() -> Path:
    return Path(os.environ.get("CTR_WAREHOUSE_DIR", "data/warehouse")) / "m2ctr.db" / "training_samples"


def cold_bucket(train_counts: np.ndarray) -> np.ndarray:
    """0 = no impression on the training days, 1 = 1..4 impressions, 2 = 5 or more."""
    return np.where(train_counts == 0, 0, np.where(train_counts < 5, 1, 2)).astype(np.int64)


# ---------------------------------------------------------------------------- table


class Table:
    """A hive-partitioned (`date=YYYY-MM-DD/`) ORC directory, read batch by batch."""

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
            raise TrainerError(
                f"table {self.path} lacks required columns: {', '.join(missing)}"
            )
        days = set()
        for frag in self.dataset.get_fragments():
            day = ds.get_partition_keys(frag.partition_expression).get("date")
            if day is None:
                raise TrainerError(f"{frag.path} is not under a date=YYYY-MM-DD/ partition")
            days.add(day)
        self.days = sorted(days)

    def batches(
        self, days: Iterable[str], columns: Iterable[str], batch_size: int = 65536
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of the given days in a stable order (by day, then file)."""
        columns = list(dict.fromkeys([*columns, "date"]))
        for day in sorted(days):
            yield from self.dataset.to_batches(
                columns=columns, filter=ds.field("date") == day, batch_size=batch_size
            )


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


def _numpy(col: pa.Array | pa.ChunkedArray, fill, dtype) -> np.ndarray:
    return pc.fill_null(col, fill).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def stable_hash(value: str) -> int:
    # Python's hash() is salted per process; crc32 gives the same bucket in every run.
    return zlib.crc32(value.encode("utf-8"))


# ---------------------------------------------------------------------------- preprocessing


class Preprocessor:
    """Scalers, id vocabularies, scene index and training-day counts, fitted on train only.

    An id seen at least `min_count` times on the training days gets its own row
    (1..V, at most `max_vocab` of the most frequent); every other id, including
    ids first seen at validation or test time, is hashed into one of
    `hash_buckets` shared rows after the vocabulary.
    """

    def __init__(self, state: dict):
        self.state = state
        self.mean = np.asarray(state["mean"], dtype=np.float32)
        self.std = np.asarray(state["std"], dtype=np.float32)
        self.log_mask = np.isin(state["dense_columns"], state["log_columns"])
        self.scenes = list(state["scenes"])
        self.hash_buckets = int(state["hash_buckets"])
        self.vocab = {f: pa.array(v, pa.string()) for f, v in state["vocab"].items()}
        self.train_counts = state["train_counts"]

    # -- fitting

    @classmethod
    def fit(
        cls,
        batches: Iterable[pa.RecordBatch],
        min_count: int = 2,
        max_vocab: int = 200_000,
        hash_buckets: int = 4096,
    ) -> Preprocessor:
        counts = {f: Counter() for f in ID_FIELDS}
        scenes: set[int] = set()
        n = 0
        s1 = np.zeros(len(DENSE_COLUMNS))
        s2 = np.zeros(len(DENSE_COLUMNS))
        log_mask = np.isin(DENSE_COLUMNS, LOG_COLUMNS)
        for batch in batches:
            for f in ID_FIELDS:
                vc = pc.value_counts(pc.fill_null(batch.column(f), ""))
                counts[f].update(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))
            scenes.update(pc.unique(batch.column("scene")).to_pylist())
            x = _dense_matrix(batch).astype(np.float64)
            x[:, log_mask] = np.log1p(np.maximum(x[:, log_mask], 0.0))
            s1 += x.sum(0)
            s2 += (x * x).sum(0)
            n += batch.num_rows
        if n == 0:
            raise TrainerError("empty split: the training days hold no rows")
        scenes.discard(None)
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
        std[std < 1e-6] = 1.0
        flags = np.isin(DENSE_COLUMNS, FLAG_COLUMNS)
        mean[flags], std[flags] = 0.0, 1.0
        vocab = {}
        for f in ID_FIELDS:
            frequent = sorted(
                ((c, k) for k, c in counts[f].items() if c >= min_count and k != ""),
                key=lambda ck: (-ck[0], ck[1]),
            )[:max_vocab]
            vocab[f] = [k for _, k in frequent]
        return cls(
            {
                "dense_columns": list(DENSE_COLUMNS),
                "log_columns": list(LOG_COLUMNS),
                "mean": mean.tolist(),
                "std": std.tolist(),
                "scenes": sorted(int(s) for s in scenes),
                "hash_buckets": hash_buckets,
                "min_count": min_count,
                "vocab": vocab,
                "train_counts": {f: dict(counts[f]) for f in ID_FIELDS},
                "n_train_rows": n,
            }
        )

    # -- shape of the model input

    @property
    def id_cardinalities(self) -> list[int]:
        # row 0 unused, 1..V vocabulary, then the hash buckets
        return [1 + len(self.vocab[f]) + self.hash_buckets for f in ID_FIELDS]

    @property
    def n_dense(self) -> int:
        return len(self.state["dense_columns"])

    # -- transforming

    def encode_ids(self, field: str, values: pa.Array) -> np.ndarray:
        values = pc.fill_null(values, "")
        idx = pc.index_in(values, value_set=self.vocab[field])
        out = _numpy(idx, -1, np.int64) + 1  # vocabulary rows start at 1
        unseen = np.flatnonzero(out == 0)
        if unseen.size:
            base = 1 + len(self.vocab[field])
            names = values.take(pa.array(unseen)).to_pylist()
            out[unseen] = [base + stable_hash(v) % self.hash_buckets for v in names]
        return out

    def train_count(self, field: str, values: pa.Array) -> np.ndarray:
        counts = self.train_counts[field]
        return np.array([counts.get(v, 0) for v in pc.fill_null(values, "").to_pylist()], np.int64)

    def transform(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        x = _dense_matrix(batch)
        x[:, self.log_mask] = np.log1p(np.maximum(x[:, self.log_mask], 0.0))
        x = (x - self.mean) / self.std
        scene_raw = batch.column("scene")
        scene = _numpy(pc.index_in(scene_raw, value_set=pa.array(self.scenes, scene_raw.type)), -1, np.int64)
        if (scene < 0).any():
            unknown = sorted(set(np.asarray(scene_raw)[scene < 0].tolist()), key=str)
            raise TrainerError(
                f"scene(s) {unknown} never appear on the training days (known: {self.scenes})"
            )
        return {
            "ids": np.stack([self.encode_ids(f, batch.column(f)) for f in ID_FIELDS], axis=1),
            "dense": x.astype(np.float32, copy=False),
            "scene": scene,
            "label": _numpy(batch.column("label"), 0, np.float32),
            "cold_user": cold_bucket(self.train_count("user_id", batch.column("user_id"))),
            "cold_item": cold_bucket(self.train_count("item_id", batch.column("item_id"))),
            # kept for GAUC, which groups by the raw user id (hash buckets would merge users)
            "user_id": np.asarray(pc.fill_null(batch.column("user_id"), "").to_pylist(), object),
        }

    # -- persistence (JSON only: nothing is unpickled when a run is loaded)

    def save(self, run_dir: Path) -> None:
        state = dict(self.state)
        vocab, counts = state.pop("vocab"), state.pop("train_counts")
        (run_dir / "preprocessing.json").write_text(json.dumps(state, indent=1))
        (run_dir / "vocab.json").write_text(json.dumps(vocab))
        (run_dir / "train_counts.json").write_text(json.dumps(counts))

    @classmethod
    def load(cls, run_dir: Path) -> Preprocessor:
        state = json.loads((run_dir / "preprocessing.json").read_text())
        state["vocab"] = json.loads((run_dir / "vocab.json").read_text())
        state["train_counts"] = json.loads((run_dir / "train_counts.json").read_text())
        return cls(state)


def _dense_matrix(batch: pa.RecordBatch) -> np.ndarray:
    return np.stack([_numpy(batch.column(c), 0, np.float32) for c in DENSE_COLUMNS], axis=1)


# ---------------------------------------------------------------------------- splits


def load_split(
    table: Table,
    days: list[str],
    prep: Preprocessor,
    featurizer=None,
    blocks: Iterable[str] = (),
    batch_size: int = 65536,
) -> dict[str, np.ndarray]:
    """All rows of `days` as concatenated numpy arrays (features, labels, keys, text blocks)."""
    blocks = list(blocks)
    columns = [*REQUIRED_COLUMNS, *(TEXT_COLUMNS if featurizer is not None else ())]
    parts: dict[str, list[np.ndarray]] = {}
    for batch in table.batches(days, columns, batch_size):
        if batch.num_rows == 0:
            continue
        arrays = prep.transform(batch)
        if featurizer is not None:
            text = featurizer.transform(batch)
            arrays.update({k: np.asarray(text[k], np.float32) for k in blocks})
        for k, v in arrays.items():
            parts.setdefault(k, []).append(v)
    if not parts:
        raise TrainerError(f"empty split: no rows on day(s) {', '.join(days)}")
    return {k: np.concatenate(v) for k, v in parts.items()}
