"""TextFeaturizer: the content side of a run, held once per unique text and indexed per row.

A row's user text is its user text columns, its item text its item text columns (m2ctr.schema).
Per side the featurizer keeps one table row per unique raw text (the fields as read, joined):

    white   float32 [K, k + 1]  whitened encoder vector, then a "no text" flag      (vectors)
    sent    float32 [K, d + 1]  fallback sentence vector, then a "no text" flag      (fallback)
    topic   float32 [K, c + 1]  TF-IDF -> SVD components, then a "no text" flag      (topics)
    tokens  int32   [K, F, L]   content ids per field, 0-padded (embeddings.tokens)   (tokens)

`transform(batch)` gives each row only the int index of its user and item text in those tables;
texts not seen before are added (encoded through the cache) on the way. `gather` turns a batch's
indices into the blocks a model reads, on the batch's device:

    text_user, text_item  the whitened vectors
    fb_user, fb_item      the sentence vector for zero/few ids, the training mean for warm ids
                          (the row's point-in-time bucket, `hist_user` / `hist_item`)
    topic_user, topic_item  the text components
    tok_user, tok_item    the token ids [B, F, L]

So memory grows with the number of unique texts, never with rows. Everything fitted (whitening,
the fallback means, the text components, the token vocabulary) comes from the training days only
(`fit`). The components are fitted once over both sides' distinct texts, so a user's and an item's
components share one space and their product is a match signal.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from embeddings.cache import CachedEncoder
from embeddings.encoder import HFEncoder, SentenceEncoder
from embeddings.options import TextConfig
from embeddings.text import ITEM_TEXT_ORDER, USER_TEXT_ORDER, join_fields, normalise
from embeddings.tokens import TokenVocab, forget_words
from embeddings.topics import TextComponents
from embeddings.whitening import Whitening
from m2ctr.schema import HISTORY_KEYS, WARM

SIDES = {"user": ("user_id", USER_TEXT_ORDER), "item": ("item_id", ITEM_TEXT_ORDER)}
SAVE_DIR = "text"
_SEP = "\x1f"  # joins the raw fields of one side into the key of its text


def raw_keys(batch: pa.RecordBatch | pa.Table, columns) -> pa.Array:
    """One string per row: the side's raw text fields joined (nulls as empty)."""
    missing = [c for c in columns if c not in batch.schema.names]
    if missing:
        raise KeyError(f"text column(s) {missing} missing from the batch (columns: {batch.schema.names})")
    parts = [pc.fill_null(batch.column(c).cast(pa.string()), "") for c in columns]
    out = pc.binary_join_element_wise(*parts, _SEP)
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


class _SideTable:
    """The unique texts of one side, in order of arrival, with their rows of each table.

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
        idx = self.index.get_indexer(keys.to_numpy(zero_copy_only=False))
        self.clock += 1
        self.last_used[idx[idx >= 0]] = self.clock
        return idx

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


class TextFeaturizer:
    def __init__(self, cfg: Mapping | TextConfig | None = None):
        self.cfg = cfg if isinstance(cfg, TextConfig) else TextConfig.from_dict(cfg)
        c = self.cfg
        backend = c.encoder_backend
        self.encoder = CachedEncoder(HFEncoder(c.text_model, c.pooling, c.max_tokens, c.batch_size, c.device,
                                               backend), c.cache_dir) if c.vectors else None
        self.sentence = CachedEncoder(SentenceEncoder(c.sentence_model, c.max_tokens, c.batch_size, c.device,
                                                      backend), c.cache_dir) if c.fallback else None
        self.whitening: Whitening | None = None
        self.fallback_mean: dict[str, np.ndarray] = {}
        self.topics: TextComponents | None = None
        self.vocab: TokenVocab | None = None
        self.fitted = False
        self.tables = {side: _SideTable() for side in SIDES}
        self._tensors: dict = {}

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, train_batches: Iterable[pa.RecordBatch],
            cold: Callable[[str, pa.RecordBatch], np.ndarray]) -> TextFeaturizer:
        """Fit on the training days only; `cold(side, batch)` gives the cold-start bucket of each
        row's user or item (the texts of zero/few rows get sentence vectors)."""
        key_rows = {side: Counter() for side in SIDES}  # training rows per unique text
        cold_keys = {side: set() for side in SIDES}     # texts shown with a zero/few id
        for batch in train_batches:
            for side, (_, columns) in SIDES.items():
                keys = raw_keys(batch, columns)
                vc = pc.value_counts(keys)
                key_rows[side].update(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))
                is_cold = cold(side, batch) != WARM
                if is_cold.any():
                    cold_keys[side].update(pc.unique(keys.filter(pa.array(is_cold))).to_pylist())
        if not key_rows["user"]:
            raise ValueError("TextFeaturizer.fit got no training rows")
        texts = {side: {k: join_fields(k.split(_SEP)) for k in key_rows[side]} for side in SIDES}

        if self.encoder is not None:
            unique = sorted({t for side in SIDES for t in texts[side].values() if t})
            if len(unique) < 2:
                raise ValueError("need at least two distinct non-empty training texts to fit whitening")
            # one space for both sides, each distinct text counted once
            self.whitening = Whitening.fit(self.encoder.vectors(unique), self.cfg.whiten_dim)
        if self.sentence is not None:
            for side in SIDES:
                cold_texts = sorted({texts[side][k] for k in cold_keys[side]} - {""})
                self.fallback_mean[side] = (self.sentence.vectors(cold_texts).mean(axis=0) if cold_texts
                                            else np.zeros(self.sentence.dim, dtype=np.float32))
        if self.cfg.topics:
            distinct = sorted({t for side in SIDES for t in texts[side].values() if t})
            self.topics = TextComponents(self.cfg.topic_dim).fit(distinct)
        if self.cfg.tokens:
            self.vocab = TokenVocab.fit(
                ((SIDES[side][1], k.split(_SEP), n) for side in SIDES for k, n in key_rows[side].items()),
                self.cfg.token_min_count, self.cfg.token_max_vocab, self.cfg.token_buckets,
                self.cfg.tokens_per_field)
        self.fitted = True
        for side in SIDES:
            self._add(side, list(key_rows[side]), cold_keys[side])
        return self

    # -- the tables --------------------------------------------------------------------------

    def _add(self, side: str, keys: list[str], cold_keys=None) -> None:
        """Append table rows for new texts. Sentence vectors are encoded only for texts shown with
        a zero/few id (`cold_keys`; None: all), since warm rows read the training mean instead."""
        if not keys:
            return
        columns = SIDES[side][1]
        fields_ = [k.split(_SEP) for k in keys]
        texts = [join_fields(f) for f in fields_]
        empty = np.array([not t for t in texts])
        present = [t for t in texts if t]
        rows = {}
        if self.whitening is not None:
            white = np.zeros((len(keys), self.whitening.dim + 1), dtype=np.float32)
            if present:
                white[~empty, :-1] = self.whitening.transform(self.encoder.vectors(present))
            white[empty, -1] = 1.0
            rows["white"] = white
        if self.sentence is not None:
            sent = np.zeros((len(keys), len(self.fallback_mean[side]) + 1), dtype=np.float32)
            sent[empty, -1] = 1.0
            rows["sent"] = sent
            rows["has_sent"] = empty.copy()
        if self.topics is not None:
            topic = np.zeros((len(keys), self.topics.n_components + 1), dtype=np.float32)
            if present:
                topic[~empty, :-1] = self.topics.transform(present)
            topic[empty, -1] = 1.0
            rows["topic"] = topic
        if self.vocab is not None:
            rows["tokens"] = self.vocab.encode(columns, fields_)
        table = self.tables[side]
        start = len(table)
        table.append(keys, rows)
        if self.sentence is not None:
            need = np.arange(start, start + len(keys))
            if cold_keys is not None:
                need = need[[k in cold_keys for k in keys]]
            self._fill_sentences(side, need)

    def _fill_sentences(self, side: str, rows: np.ndarray) -> None:
        """Encode the sentence vectors of table rows that lack one."""
        table = self.tables[side]
        has = table.block("has_sent")
        rows = np.unique(rows[~has[rows]])
        if not len(rows):
            return
        texts = [join_fields(table.index[r].split(_SEP)) for r in rows]
        table.block("sent")[rows, :-1] = self.sentence.vectors(texts)
        has[rows] = True
        table.version += 1

    def transform(self, batch: pa.RecordBatch | pa.Table,
                  cold: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Per row, the index of its user text and of its item text (`text_user`, `text_item`).
        `cold` (the rows' cold-start buckets per side) limits sentence encoding to the texts of
        zero/few ids; without it every new text gets a sentence vector."""
        if not self.fitted:
            raise RuntimeError("TextFeaturizer.transform called before fit/load")
        out = {}
        for side, (_, columns) in SIDES.items():
            keys = raw_keys(batch, columns)
            table = self.tables[side]
            idx = table.lookup(keys)
            table.hits += int((idx >= 0).sum())  # rows whose text the table already held
            table.misses += int((idx < 0).sum())
            if (idx < 0).any():
                self._add(side, pc.unique(keys.filter(pa.array(idx < 0))).to_pylist(), cold_keys=set())
                idx = table.lookup(keys)
            if self.sentence is not None:
                need = idx if cold is None else idx[np.asarray(cold[side]) != WARM]
                self._fill_sentences(side, need)
            out[f"text_{side}"] = idx.astype(np.int64)
        return out

    # -- a bound for long-running services ---------------------------------------------------------

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
            for enc in (self.encoder, self.sentence):
                if enc is not None:
                    enc.forget()
            # the per-string memos of normalising and splitting hold the dropped texts too
            normalise.cache_clear()
            forget_words()

    def table_stats(self) -> dict:
        out = {}
        for side, t in self.tables.items():
            seen = t.hits + t.misses
            out[side] = {"texts": len(t), "run_texts": t.pinned, "added_texts": len(t) - t.pinned,
                         "hits": t.hits, "misses": t.misses, "hit_rate": t.hits / seen if seen else None}
        return out

    @property
    def widths(self) -> dict[str, int]:
        """Width of each float block `gather` makes (the model spec needs them)."""
        out = {}
        if self.whitening is not None:
            out.update({f"text_{side}": self.whitening.dim + 1 for side in SIDES})
        if self.sentence is not None:
            out.update({f"fb_{side}": len(m) + 1 for side, m in self.fallback_mean.items()})
        if self.topics is not None:
            out.update({f"topic_{side}": self.topics.n_components + 1 for side in SIDES})
        return out

    @property
    def token_spec(self) -> dict | None:
        """Token table size and fields per side (the model spec needs them), or None."""
        if self.vocab is None:
            return None
        return {"n_tokens": self.vocab.size, "per_field": self.vocab.per_field,
                "fields": {side: len(columns) for side, (_, columns) in SIDES.items()}}

    @property
    def n_encoded(self) -> int:
        """Texts that went through a model in this process (0 when all came from the cache)."""
        return sum(e.n_encoded for e in (self.encoder, self.sentence) if e is not None)

    def n_unique(self) -> dict[str, int]:
        return {side: len(t) for side, t in self.tables.items()}

    def gather(self, batch: dict, device) -> dict:
        """Replace a batch's text indices by the blocks they point at (tables cached on `device`)."""
        import torch

        for side in SIDES:
            table = self.tables[side]
            key = (side, str(device))
            if self._tensors.get(key, (None,))[0] != table.version:
                self._tensors[key] = (table.version, {
                    name: torch.from_numpy(table.block(name)).to(device) for name in table.blocks
                    if name != "has_sent"})
            tensors = self._tensors[key][1]
            idx = batch.pop(f"text_{side}")
            if "white" in tensors:
                batch[f"text_{side}"] = tensors["white"][idx]
            if "sent" in tensors:
                mean = torch.from_numpy(np.r_[self.fallback_mean[side], 0.0].astype(np.float32)).to(device)
                warm = (batch[HISTORY_KEYS[side]] == WARM).unsqueeze(1)
                batch[f"fb_{side}"] = torch.where(warm, mean, tensors["sent"][idx])
            if "topic" in tensors:
                batch[f"topic_{side}"] = tensors["topic"][idx]
            if "tokens" in tensors:
                batch[f"tok_{side}"] = tensors["tokens"][idx].long()
        return batch

    def blocks(self, batch: pa.RecordBatch | pa.Table, cold: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each row's blocks as numpy arrays, exactly what `gather` hands a model; `cold` holds the
        rows' cold-start buckets per side."""
        import torch

        b = {k: torch.from_numpy(v) for k, v in self.transform(batch, cold).items()}
        b.update({HISTORY_KEYS[side]: torch.from_numpy(np.asarray(cold[side], np.int64)) for side in SIDES})
        return {k: v.numpy() for k, v in self.gather(b, "cpu").items() if k not in HISTORY_KEYS.values()}

    # -- persistence -------------------------------------------------------------------------

    def save(self, run_dir: str | Path) -> Path:
        directory = Path(run_dir) / SAVE_DIR
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"config": asdict(self.cfg),
                "text_model_id": self.encoder.encoder.model_id if self.encoder else None,
                "sentence_model_id": self.sentence.encoder.model_id if self.sentence else None,
                "widths": self.widths, "tokens": self.token_spec,
                "fitted_on": "unique texts of the training days"}
        (directory / "featurizer.json").write_text(json.dumps(meta, indent=2))
        if self.whitening is not None:
            self.whitening.save(directory, "whiten")
        for side, mean in self.fallback_mean.items():
            np.save(directory / f"fallback_{side}_mean.npy", mean)
        if self.topics is not None:
            self.topics.save(directory / "topics")
        if self.vocab is not None:
            self.vocab.save(directory / "token_vocab.json")
        return directory

    @classmethod
    def load(cls, run_dir: str | Path, **overrides) -> TextFeaturizer:
        """Restore a fitted featurizer; `overrides` may change e.g. `device` or `cache_dir`.
        Its tables start empty and fill with the texts of whatever it transforms."""
        directory = Path(run_dir) / SAVE_DIR
        meta = json.loads((directory / "featurizer.json").read_text())
        self = cls({**meta["config"], **overrides})
        if self.encoder is not None:
            self.whitening = Whitening.load(directory, "whiten")
        if self.sentence is not None:
            for side in SIDES:
                self.fallback_mean[side] = np.load(directory / f"fallback_{side}_mean.npy")
        if self.cfg.topics:
            self.topics = TextComponents.load(directory / "topics")
        if self.cfg.tokens:
            self.vocab = TokenVocab.load(directory / "token_vocab.json")
        self.fitted = True
        return self
