"""TextFeaturizer: the content side of a run, held once per unique text and indexed per row.

A row's user text is its user text columns, its item text its item text columns (m2ctr.schema).
The featurizer puts together one small part per job:

    fitting.py   TrainingTexts: what a fit reads of the training days
    blocks.py    the blocks of a table row, one encoder each (vectors, fallback, topics, tokens)
    tables.py    TextTable: per side, one row per unique raw text (the fields as read, joined)
    devices.py   DeviceTables: the tables as tensors on the batch's device
    persist.py   save / load of what was fitted
    keys.py      the batch keys: the per-row indices and the blocks they become

`transform(batch)` gives each row only the int index of its user and item text in the tables
(`text_index_user`, `text_index_item`); texts not seen before are added (encoded through the
cache) on the way. `gather` replaces a batch's indices by the blocks a model reads, on the
batch's device (`text_*`, `fb_*`, `topic_*`, `tok_*`; `embeddings.keys`). So memory grows with
the number of unique texts, never with rows. Everything fitted comes from the training days only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embeddings import persist
from embeddings.blocks import FallbackBlock, TokenBlock, TopicBlock, VectorBlock
from embeddings.cache import CachedEncoder
from embeddings.devices import DeviceTables
from embeddings.encoder import HFEncoder, SentenceEncoder, backend_for
from embeddings.fitting import TrainingTexts
from embeddings.keys import INDEX, SIDES
from embeddings.options import TextConfig
from embeddings.tables import TextTable, key_fields, raw_keys
from embeddings.text import TEXT_FIELDS, join_fields, normalise
from embeddings.tokens import forget_words
from m2ctr.schema import HISTORY_KEYS, WARM


class TextFeaturizer:
    def __init__(self, cfg: Mapping | TextConfig | None = None):
        c = cfg if isinstance(cfg, TextConfig) else TextConfig.from_dict(cfg)
        self.cfg = c = c.replace(encoder_backend=backend_for(c))  # `auto` resolved: what the run records
        self.vectors = self.fallback = self.topics = self.tokens = None
        if c.vectors:
            text = HFEncoder.of(c)
            self.vectors = VectorBlock(CachedEncoder(text, c.cache_dir), c.whiten_dim)
        if c.fallback:
            sentence = SentenceEncoder.of(c)
            self.fallback = FallbackBlock(CachedEncoder(sentence, c.cache_dir))
        if c.topics:
            self.topics = TopicBlock(c.topic_dim)
        if c.tokens:
            self.tokens = TokenBlock(c.token_min_count, c.token_max_vocab, c.token_buckets, c.tokens_per_field)
        # the parts in the order a table row holds them and `gather` hands them on
        self.parts = [p for p in (self.vectors, self.fallback, self.topics, self.tokens) if p is not None]
        self.tables = {side: TextTable() for side in SIDES}
        self.on_device = DeviceTables(host_only=(FallbackBlock.ENCODED,))
        self.fitted = False

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, train_batches: Iterable[pa.RecordBatch],
            cold: Callable[[str, pa.RecordBatch], np.ndarray]) -> TextFeaturizer:
        """Fit on the training days only; `cold(side, batch)` gives the cold-start bucket of each
        row's user or item (the texts of zero/few rows get sentence vectors)."""
        seen = TrainingTexts.read(train_batches, cold)
        for part in self.parts:
            part.fit(seen)
        self.fitted = True
        for side in SIDES:
            self._add(side, seen.keys(side), seen.cold[side])
        return self

    # -- rows to indices ---------------------------------------------------------------------

    def _add(self, side: str, keys: list[str], cold_keys=None) -> None:
        """Append table rows for new texts. Sentence vectors are encoded only for texts shown with
        a zero/few id (`cold_keys`; None: all), since warm rows read the training mean instead."""
        if not keys:
            return
        fields = [key_fields(k) for k in keys]
        texts = [join_fields(f) for f in fields]
        empty = np.array([not t for t in texts])
        rows = {}
        for part in self.parts:
            rows.update(part.rows(side, fields, texts, empty))
        table = self.tables[side]
        start = len(table)
        table.append(keys, rows)
        if self.fallback is not None:
            need = np.arange(start, start + len(keys))
            if cold_keys is not None:
                need = need[[k in cold_keys for k in keys]]
            self.fallback.encode(table, need)

    def transform(self, batch: pa.RecordBatch | pa.Table,
                  cold: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Per row, the index of its user text and of its item text (`INDEX`). `cold` (the rows'
        cold-start buckets per side) limits sentence encoding to the texts of zero/few ids;
        without it every new text gets a sentence vector."""
        if not self.fitted:
            raise RuntimeError("TextFeaturizer.transform called before fit/load")
        out = {}
        for side in SIDES:
            keys = raw_keys(batch, TEXT_FIELDS[side])
            table = self.tables[side]
            idx = table.lookup(keys)
            table.count(idx)
            if (idx < 0).any():
                self._add(side, pc.unique(keys.filter(pa.array(idx < 0))).to_pylist(), cold_keys=set())
                idx = table.lookup(keys)
            if self.fallback is not None:
                need = idx if cold is None else idx[np.asarray(cold[side]) != WARM]
                self.fallback.encode(table, need)
            out[INDEX[side]] = idx.astype(np.int64)
        return out

    # -- indices to blocks -------------------------------------------------------------------

    def gather(self, batch: dict, device) -> dict:
        """Replace a batch's text indices by the blocks they point at (tables cached on `device`)."""
        for side in SIDES:
            tensors = self.on_device.tensors(side, self.tables[side], device)
            idx = batch.pop(INDEX[side])
            for part in self.parts:
                if part.name in tensors:
                    batch[part.keys[side]] = part.gather(tensors, idx, batch, side)
        return batch

    def blocks(self, batch: pa.RecordBatch | pa.Table, cold: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each row's blocks as numpy arrays, exactly what `gather` hands a model; `cold` holds the
        rows' cold-start buckets per side."""
        import torch

        b = {k: torch.from_numpy(v) for k, v in self.transform(batch, cold).items()}
        b.update({HISTORY_KEYS[side]: torch.from_numpy(np.asarray(cold[side], np.int64)) for side in SIDES})
        return {k: v.numpy() for k, v in self.gather(b, "cpu").items() if k not in HISTORY_KEYS.values()}

    @property
    def widths(self) -> dict[str, int]:
        """Width of each float block `gather` makes (the model spec needs them); tokens are not one."""
        floats = [part for part in self.parts if part is not self.tokens]
        return {part.keys[side]: part.width(side) for part in floats for side in SIDES}

    @property
    def token_spec(self) -> dict | None:
        """Token table size and fields per side (the model spec needs them), or None."""
        if self.tokens is None:
            return None
        vocab = self.tokens.vocab
        return {"n_tokens": vocab.size, "per_field": vocab.per_field,
                "fields": {side: len(TEXT_FIELDS[side]) for side in SIDES}}

    # -- a bound for long-running services ---------------------------------------------------

    def pin(self) -> None:
        """The texts held now stay; `trim` bounds only those added after."""
        for table in self.tables.values():
            table.pinned = len(table)

    def trim(self, max_texts: int) -> None:
        """At most `max_texts` added texts per side, least recently used dropped first. The encoders'
        in-process memories and the text memos are emptied with them: the tables hold what scoring
        needs."""
        dropped = sum(table.trim(max_texts) for table in self.tables.values())
        if dropped:
            for enc in self._encoders():
                enc.forget()
            # the per-string memos of normalising and splitting hold the dropped texts too
            normalise.cache_clear()
            forget_words()

    def table_stats(self) -> dict:
        return {side: t.stats() for side, t in self.tables.items()}

    def n_unique(self) -> dict[str, int]:
        return {side: len(t) for side, t in self.tables.items()}

    @property
    def n_encoded(self) -> int:
        """Texts that went through a model in this process (0 when all came from the cache)."""
        return sum(e.n_encoded for e in self._encoders())

    def _encoders(self) -> list[CachedEncoder]:
        return [part.encoder for part in self.parts if part.encoder is not None]

    # -- persistence (embeddings.persist) ----------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write what was fitted into `directory` (a run's `text/`)."""
        return persist.save(self, directory)

    @classmethod
    def load(cls, directory: str | Path, **overrides) -> TextFeaturizer:
        """Restore a fitted featurizer from `directory`; `overrides` may change e.g. `device` or
        `cache_dir`. Its tables start empty and fill with the texts of whatever it transforms."""
        self = cls({**persist.saved_config(directory), **overrides})
        persist.restore(self, directory)
        self.fitted = True
        return self
