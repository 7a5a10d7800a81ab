"""The blocks of a text table, one encoder each: what a table row of a text holds, what it is
fitted on, and how a batch's indices become the tensor a model reads.

    VectorBlock    "white"   whitened encoder vector, then a "no text" flag     -> text_<side>
    FallbackBlock  "sent"    fallback sentence vector, then a "no text" flag     -> fb_<side>
    TopicBlock     "topic"   TF-IDF -> SVD components, then a "no text" flag     -> topic_<side>
    TokenBlock     "tokens"  content ids per field, 0-padded                     -> tok_<side>

Every block is fitted on `TrainingTexts` (the training days only). The flag column is part of
the block: the weights a model learns for it act as a learned "no text" vector.
"""

from __future__ import annotations

import numpy as np

from embeddings.cache import CachedEncoder
from embeddings.fitting import TrainingTexts
from embeddings.keys import FALLBACK, TOKENS, TOPIC, VECTOR
from embeddings.tables import TextTable, key_fields
from embeddings.text import TEXT_FIELDS, join_fields
from embeddings.tokens import TokenVocab
from embeddings.topics import TextComponents
from embeddings.whitening import Whitening
from m2ctr.schema import HISTORY_KEYS, WARM


def flagged(values: np.ndarray | None, empty: np.ndarray, width: int) -> np.ndarray:
    """[n, width + 1]: `values` on the rows with text, zeros and the "no text" flag on the others."""
    out = np.zeros((len(empty), width + 1), dtype=np.float32)
    if values is not None:
        out[~empty, :-1] = values
    out[empty, -1] = 1.0
    return out


class VectorBlock:
    """Whitened encoder vectors; one whitening over both sides' distinct training texts, so a user
    vector and an item vector live in one space."""

    name, keys = "white", VECTOR

    def __init__(self, encoder: CachedEncoder, whiten_dim: int):
        self.encoder, self.whiten_dim = encoder, whiten_dim
        self.whitening: Whitening | None = None

    def fit(self, seen: TrainingTexts) -> None:
        distinct = seen.distinct()
        if len(distinct) < 2:
            raise ValueError("need at least two distinct non-empty training texts to fit whitening")
        self.whitening = Whitening.fit(self.encoder.vectors(distinct), self.whiten_dim)

    def width(self, side: str) -> int:
        return self.whitening.dim + 1

    def rows(self, side: str, fields: list, texts: list[str], empty: np.ndarray) -> dict[str, np.ndarray]:
        present = [t for t in texts if t]
        values = self.whitening.transform(self.encoder.vectors(present)) if present else None
        return {self.name: flagged(values, empty, self.whitening.dim)}

    def gather(self, tensors: dict, idx, batch: dict, side: str):
        return tensors[self.name][idx]


class FallbackBlock:
    """Sentence vectors for the texts of zero/few ids; warm rows read the mean of the training
    days' cold texts instead, a constant the model can tell apart from "no text".

    A table row's sentence vector is encoded only once a zero/few row shows its text (`encode`);
    `ENCODED` marks the rows that have one."""

    name, keys = "sent", FALLBACK
    ENCODED = "has_sent"  # host-only: never copied to a device

    def __init__(self, encoder: CachedEncoder):
        self.encoder = encoder  # a sentence encoder
        self.mean: dict[str, np.ndarray] = {}

    def fit(self, seen: TrainingTexts) -> None:
        for side in self.keys:
            cold_texts = seen.cold_texts(side)
            self.mean[side] = (self.encoder.vectors(cold_texts).mean(axis=0) if cold_texts
                               else np.zeros(self.encoder.dim, dtype=np.float32))

    def width(self, side: str) -> int:
        return len(self.mean[side]) + 1

    def rows(self, side: str, fields: list, texts: list[str], empty: np.ndarray) -> dict[str, np.ndarray]:
        return {self.name: flagged(None, empty, len(self.mean[side])), self.ENCODED: empty.copy()}

    def encode(self, table: TextTable, rows: np.ndarray) -> None:
        """Encode the sentence vectors of the table rows among `rows` that lack one."""
        has = table.block(self.ENCODED)
        rows = np.unique(rows[~has[rows]])
        if not len(rows):
            return
        texts = [join_fields(key_fields(table.index[r])) for r in rows]
        table.block(self.name)[rows, :-1] = self.encoder.vectors(texts)
        has[rows] = True
        table.version += 1

    def gather(self, tensors: dict, idx, batch: dict, side: str):
        import torch

        device = tensors[self.name].device
        mean = torch.from_numpy(np.r_[self.mean[side], 0.0].astype(np.float32)).to(device)
        warm = (batch[HISTORY_KEYS[side]] == WARM).unsqueeze(1)
        return torch.where(warm, mean, tensors[self.name][idx])


class TopicBlock:
    """Text components, fitted once over both sides' distinct training texts, so a user's and an
    item's components share one space and their product is a match signal."""

    name, keys, encoder = "topic", TOPIC, None

    def __init__(self, n_components: int):
        self.components = TextComponents(n_components)

    def fit(self, seen: TrainingTexts) -> None:
        self.components.fit(seen.distinct())

    def width(self, side: str) -> int:
        return self.components.n_components + 1

    def rows(self, side: str, fields: list, texts: list[str], empty: np.ndarray) -> dict[str, np.ndarray]:
        present = [t for t in texts if t]
        values = self.components.transform(present) if present else None
        return {self.name: flagged(values, empty, self.components.n_components)}

    def gather(self, tensors: dict, idx, batch: dict, side: str):
        return tensors[self.name][idx]


class TokenBlock:
    """Content ids: one vocabulary for both sides, counted over the training rows."""

    name, keys, encoder = "tokens", TOKENS, None

    def __init__(self, min_count: int, max_vocab: int, buckets: int, per_field: int):
        self.settings = (min_count, max_vocab, buckets, per_field)
        self.vocab: TokenVocab | None = None

    def fit(self, seen: TrainingTexts) -> None:
        self.vocab = TokenVocab.fit(seen.weighted_fields(), *self.settings)

    def rows(self, side: str, fields: list, texts: list[str], empty: np.ndarray) -> dict[str, np.ndarray]:
        return {self.name: self.vocab.encode(TEXT_FIELDS[side], fields)}

    def gather(self, tensors: dict, idx, batch: dict, side: str):
        return tensors[self.name][idx].long()
