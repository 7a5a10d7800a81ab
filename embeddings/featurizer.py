"""TextFeaturizer: training_samples record batches -> text blocks for the trainer.

``fit`` sees the training days only: it encodes their unique user and item texts, fits one
whitening on the union of those unique texts (each distinct text counts once, so a text
repeated by a busy user does not dominate the directions; one space for both sides, so a
user vector and an item vector can be compared), records the cold-start counts and the mean
fallback vector. ``transform`` then maps any batch (train, validation, test, predict) to

    text_user, text_item  float32 [B, k + 1]  whitened vector, then a "no text" flag
    fb_user,   fb_item    float32 [B, d + 1]  sentence vector for zero/few ids, the training
                                              mean for warm ids, then a "no text" flag
    cold_user, cold_item  int64   [B]         0 zero, 1 few (1..4), 2 warm (5+ training rows)

Every value is computed from the row's own columns (its texts, its user_id / item_id), never
from its position, so shuffled or filtered batches get the same vectors. An empty text gives
a zero vector with the flag set: the flag's weights in the first layer act as a learned
"no text" vector. Fallback blocks are left out when ``fallback`` is off.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embeddings.cache import CachedEncoder
from embeddings.encoder import HFEncoder, SentenceEncoder
from embeddings.text import item_texts, user_texts
from embeddings.whitening import Whitening

FEW_MAX = 4  # 1..4 training impressions = few, 5 or more = warm (DESIGN.md)
ZERO, FEW, WARM = 0, 1, 2
SIDES = {"user": ("user_id", user_texts), "item": ("item_id", item_texts)}
SAVE_DIR = "text"


@dataclass
class TextConfig:
    text_model: str | None = None  # None: the bundled all-MiniLM-L6-v2
    pooling: str = "last4-mean"
    whiten_dim: int = 128
    sentence_model: str | None = None  # None: the bundled all-MiniLM-L6-v2
    cache_dir: str = ".cache/text_vectors"  # "": no disk cache
    fallback: bool = True
    max_tokens: int = 64
    batch_size: int = 128
    device: str = "auto"

    @classmethod
    def from_dict(cls, cfg: Mapping | None) -> TextConfig:
        # The trainer passes its whole text option dict; keys that are not ours (e.g. `text`)
        # and None values (option not given) fall back to the defaults.
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (cfg or {}).items() if k in known and v is not None})


def bucket(count: int) -> int:
    return ZERO if count <= 0 else FEW if count <= FEW_MAX else WARM


def _as_arrow(batch) -> pa.RecordBatch | pa.Table:
    if isinstance(batch, (pa.RecordBatch, pa.Table)):
        return batch
    return pa.Table.from_pandas(batch, preserve_index=False)  # a pandas DataFrame


def _ids(batch, column: str) -> list[str]:
    return [str(v) for v in batch.column(column).to_pylist()]


class TextFeaturizer:
    def __init__(self, cfg: Mapping | TextConfig | None = None):
        self.cfg = cfg if isinstance(cfg, TextConfig) else TextConfig.from_dict(cfg)
        self.encoder = CachedEncoder(
            HFEncoder(self.cfg.text_model, self.cfg.pooling, self.cfg.max_tokens,
                      self.cfg.batch_size, self.cfg.device), self.cfg.cache_dir)
        self.sentence = CachedEncoder(
            SentenceEncoder(self.cfg.sentence_model, self.cfg.max_tokens, self.cfg.batch_size,
                            self.cfg.device), self.cfg.cache_dir) if self.cfg.fallback else None
        self.whitening: Whitening | None = None
        self.fallback_mean: dict[str, np.ndarray] = {}
        self.train_counts: dict[str, dict[str, int]] = {}

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, train_batches: Iterable, user_train_counts: Mapping | None = None,
            item_train_counts: Mapping | None = None) -> TextFeaturizer:
        """Fit on the training split only. Counts default to the rows seen in ``train_batches``."""
        given = {"user": user_train_counts, "item": item_train_counts}
        seen = {side: Counter() for side in SIDES}
        pairs = {side: set() for side in SIDES}  # unique (id, text) of the training rows
        for batch in train_batches:
            batch = _as_arrow(batch)
            for side, (id_column, build) in SIDES.items():
                ids = _ids(batch, id_column)
                seen[side].update(ids)
                pairs[side].update(zip(ids, build(batch)))
        if not pairs["user"]:
            raise ValueError("TextFeaturizer.fit got no training rows")
        texts = sorted({text for side in SIDES for _, text in pairs[side] if text})
        if len(texts) < 2:
            raise ValueError("need at least two distinct non-empty training texts to fit whitening")
        self.whitening = Whitening.fit(self.encoder.vectors(texts), self.cfg.whiten_dim)

        for side in SIDES:
            counts = given[side] if given[side] is not None else seen[side]
            self.train_counts[side] = {str(k): int(v) for k, v in counts.items()}
            if self.sentence is not None:
                counts = self.train_counts[side]
                cold = sorted({text for id_, text in pairs[side]
                               if text and bucket(counts.get(id_, 0)) != WARM})
                self.fallback_mean[side] = (self.sentence.vectors(cold).mean(axis=0) if cold
                                            else np.zeros(self.sentence.dim, dtype=np.float32))
        return self

    # -- transforming ------------------------------------------------------------------------

    @property
    def widths(self) -> dict[str, int]:
        """Width of each float block ``transform`` returns (the model spec needs them)."""
        out = {f"text_{side}": self.whitening.dim + 1 for side in SIDES}
        if self.sentence is not None:
            out.update({f"fb_{side}": len(m) + 1 for side, m in self.fallback_mean.items()})
        return out

    @property
    def n_encoded(self) -> int:
        """Texts that went through a model in this process (0 when all came from the cache)."""
        return self.encoder.n_encoded + (self.sentence.n_encoded if self.sentence else 0)

    def _bucket(self, side: str, ids: list[str]) -> np.ndarray:
        counts = self.train_counts[side]
        return np.array([bucket(counts.get(id_, 0)) for id_ in ids], dtype=np.int64)

    @staticmethod
    def _unique(texts: list[str]) -> tuple[list[str], np.ndarray]:
        index: dict[str, int] = {}
        inverse = np.array([index.setdefault(text, len(index)) for text in texts], dtype=np.int64)
        return list(index), inverse

    def transform(self, batch) -> dict[str, np.ndarray]:
        if self.whitening is None:
            raise RuntimeError("TextFeaturizer.transform called before fit/load")
        batch = _as_arrow(batch)
        out: dict[str, np.ndarray] = {}
        for side, (id_column, build) in SIDES.items():
            unique, inverse = self._unique(build(batch))
            empty = np.array([not text for text in unique], dtype=bool)
            present = [text for text in unique if text]

            white = self.whitening
            vectors = np.zeros((len(unique), white.dim + 1), dtype=np.float32)
            vectors[~empty, :-1] = white.transform(self.encoder.vectors(present))
            vectors[empty, -1] = 1.0
            out[f"text_{side}"] = vectors[inverse]

            cold = self._bucket(side, _ids(batch, id_column))
            out[f"cold_{side}"] = cold
            if self.sentence is not None:
                mean = self.fallback_mean[side]
                fb = np.zeros((len(inverse), len(mean) + 1), dtype=np.float32)
                fb[:, :-1] = mean
                row_empty = empty[inverse]
                needed = (cold != WARM) & ~row_empty
                # Encode only texts of zero/few rows: warm rows never need a sentence vector.
                needed_unique = np.unique(inverse[needed])
                if len(needed_unique):
                    sent = self.sentence.vectors([unique[i] for i in needed_unique])
                    lookup = np.searchsorted(needed_unique, inverse[needed])
                    fb[needed, :-1] = sent[lookup]
                fb[(cold != WARM) & row_empty] = 0.0
                fb[(cold != WARM) & row_empty, -1] = 1.0
                out[f"fb_{side}"] = fb
        return out

    # -- persistence -------------------------------------------------------------------------

    def save(self, run_dir: str | Path) -> Path:
        directory = Path(run_dir) / SAVE_DIR
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"config": asdict(self.cfg), "text_model_id": self.encoder.encoder.model_id,
                "sentence_model_id": self.sentence.encoder.model_id if self.sentence else None,
                "widths": self.widths, "whitening_fitted_on": "unique non-empty training texts"}
        (directory / "featurizer.json").write_text(json.dumps(meta, indent=2))
        self.whitening.save(directory, "whiten")
        for side, mean in self.fallback_mean.items():
            np.save(directory / f"fallback_{side}_mean.npy", mean)
        for side, counts in self.train_counts.items():
            pq.write_table(pa.table({"id": list(counts), "train_count": list(counts.values())}),
                           directory / f"{side}_train_counts.parquet")
        return directory

    @classmethod
    def load(cls, run_dir: str | Path, **overrides) -> TextFeaturizer:
        """Restore a fitted featurizer; ``overrides`` may change e.g. ``device`` or ``cache_dir``."""
        directory = Path(run_dir) / SAVE_DIR
        meta = json.loads((directory / "featurizer.json").read_text())
        self = cls({**meta["config"], **overrides})
        self.whitening = Whitening.load(directory, "whiten")
        for side in SIDES:
            if self.sentence is not None:
                self.fallback_mean[side] = np.load(directory / f"fallback_{side}_mean.npy")
            table = pq.read_table(directory / f"{side}_train_counts.parquet")
            self.train_counts[side] = dict(zip(table.column("id").to_pylist(),
                                               table.column("train_count").to_pylist()))
        return self
