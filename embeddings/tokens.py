"""Content ids: every entity and every title word is a token with its own learned embedding.

Entity columns are lists (separators in embeddings/text.py): each entry, normalised (NFKC,
lowercase, whitespace collapsed), is one token. Title columns are free text: each word is one
token, from `text_words`, the one tokenisation of free text that the TF-IDF components (and so
the LightGBM peer) use too. User and item fields share one vocabulary, so "sushi" in a user's
queries and "sushi" in an item's entity names are the same id and meet in one embedding.

Words: runs of letters and digits, as English is written. Chinese is written without spaces, so a
run holding Chinese characters is segmented with rjieba (jieba's dictionary and algorithm, in
Rust, dictionary bundled in the wheel). Measured on the zh sample (50k rows, seed 7): of the
entities an item's title contains, rjieba returns 92% as tokens, with 90% of its tokens real
words (4.2 per title); character 1-2 grams recover 76% with 19% real words, 2-3 grams 99% (none
of the four-character ones) with 27% real words and 15 tokens per title, which crowd the per-field
token budget and the TF-IDF vocabulary with grams that straddle two words.

Ids: 0 pads; 1..V are the vocabulary (tokens seen at least `min_count` times on the training
days, the `max_vocab` most frequent); every other token, including ones first seen after
training, is hashed (crc32, the same in every process) into one of `buckets` shared ids after V.
"""

from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from embeddings.text import normalise
from m2ctr.schema import TITLE_COLUMNS

_WORD = re.compile(r"[^\W_]+")
# CJK unified ideographs (with extension A) and the compatibility block.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@lru_cache(maxsize=1 << 18)  # titles repeat across impressions
def _words(text: str) -> tuple[str, ...]:
    out: list[str] = []
    for run in _WORD.findall(text):
        if _HAN.search(run):
            import rjieba  # only text with Chinese characters needs the segmenter

            out.extend(w for w in rjieba.cut(run) if not w.isspace())
        else:
            out.append(run)
    return tuple(out)


def text_words(value: str | None) -> list[str]:
    """The words of a free text, normalised: English split on non-word characters, Chinese
    segmented. The one tokenisation of titles and of the TF-IDF components."""
    return list(_words(normalise(value)))


def field_tokens(column: str, value: str | None) -> list[str]:
    """The tokens of one field: entity entries, or the words of a title."""
    if column in TITLE_COLUMNS:
        return text_words(value)
    text = normalise(value)
    return text.split(", ") if text else []


class TokenVocab:
    def __init__(self, tokens: Sequence[str], buckets: int, per_field: int):
        self.tokens = list(tokens)
        self.index = {t: i + 1 for i, t in enumerate(self.tokens)}
        self.buckets = int(buckets)
        self.per_field = int(per_field)

    @property
    def size(self) -> int:
        """Rows of the embedding table: padding, vocabulary, hash buckets."""
        return 1 + len(self.tokens) + self.buckets

    @classmethod
    def fit(cls, weighted_fields: Iterable[tuple[Sequence[str], Sequence[str | None], int]],
            min_count: int, max_vocab: int, buckets: int, per_field: int) -> TokenVocab:
        """`weighted_fields`: (columns, values, n) per unique training text, n its training rows."""
        counts: Counter = Counter()
        for columns, values, n in weighted_fields:
            for column, value in zip(columns, values):
                for token in field_tokens(column, value):
                    counts[token] += n
        frequent = sorted(((c, t) for t, c in counts.items() if c >= min_count), key=lambda ct: (-ct[0], ct[1]))
        return cls([t for _, t in frequent[:max_vocab]], buckets, per_field)

    def token_id(self, token: str) -> int:
        found = self.index.get(token)
        if found is not None:
            return found
        return 1 + len(self.tokens) + zlib.crc32(token.encode("utf-8")) % self.buckets

    def encode(self, columns: Sequence[str], rows: Iterable[Sequence[str | None]]) -> np.ndarray:
        """Token ids [n, len(columns), per_field] (int32, 0-padded, truncated per field)."""
        rows = list(rows)
        out = np.zeros((len(rows), len(columns), self.per_field), dtype=np.int32)
        for r, values in enumerate(rows):
            for f, (column, value) in enumerate(zip(columns, values)):
                ids = [self.token_id(t) for t in field_tokens(column, value)[: self.per_field]]
                out[r, f, : len(ids)] = ids
        return out

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"buckets": self.buckets, "per_field": self.per_field,
                                    "tokens": self.tokens}))

    @classmethod
    def load(cls, path: Path) -> TokenVocab:
        state = json.loads(path.read_text())
        return cls(state["tokens"], state["buckets"], state["per_field"])


def forget_words() -> None:
    """Empty the memo of split titles (a long-running service bounds its memory with it)."""
    _words.cache_clear()
