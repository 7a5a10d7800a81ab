"""Build one normalised text per row for the user side and the item side.

Item text: ``item_title`` then ``item_entity_names``.
User text: ``query_entity_seq``, ``service_entity_seq``, ``bill_entity_seq`` (in that order,
so that truncation by tokens drops the bill history first; queries say most about intent).

Normalisation: Unicode NFKC (folds full-width commas and letters), lowercase, whitespace
collapsed, comma lists split, stripped and re-joined with ", ". An empty result is the
empty string; callers turn it into an explicit "no text" flag rather than a zero vector.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import pyarrow as pa

from m2ctr.schema import ITEM_TEXT_COLUMNS, USER_TEXT_COLUMNS

# The order fields are joined in: queries first, so truncation by tokens drops the bill history first.
USER_TEXT_ORDER = USER_TEXT_COLUMNS[::-1]
ITEM_TEXT_ORDER = ITEM_TEXT_COLUMNS[::-1]
TEXT_FIELDS = {"user": USER_TEXT_ORDER, "item": ITEM_TEXT_ORDER}  # each side's fields, in join order

_SPACE = re.compile(r"\s+")
# Entity lists are split on any of these: the ASCII comma, the full-width comma (NFKC folds it to
# "," anyway) and the ideographic enumeration comma, which NFKC leaves alone.
ENTITY_SEPARATORS = (",", "\uff0c", "\u3001")
_LIST_SEP = re.compile("[" + "".join(map(re.escape, ENTITY_SEPARATORS)) + "]")


@lru_cache(maxsize=1 << 18)  # titles and entity lists repeat across impressions
def normalise(value: str | None) -> str:
    """NFKC, lowercase, collapse whitespace, split a comma list and re-join it."""
    if not value:
        return ""
    value = unicodedata.normalize("NFKC", value).lower()
    parts = (_SPACE.sub(" ", part).strip() for part in _LIST_SEP.split(value))
    return ", ".join(part for part in parts if part)


def join_fields(values: Sequence[str | None]) -> str:
    """Normalise each field and join the non-empty ones with '. '."""
    return ". ".join(text for text in map(normalise, values) if text)


def _column(batch: pa.RecordBatch | pa.Table, name: str) -> list[str | None]:
    if name not in batch.schema.names:
        raise KeyError(f"text column {name!r} missing from the batch (columns: {batch.schema.names})")
    return batch.column(name).to_pylist()


def user_texts(batch: pa.RecordBatch | pa.Table) -> list[str]:
    """One normalised user text per row, in row order."""
    cols = [_column(batch, name) for name in USER_TEXT_ORDER]
    return [join_fields(values) for values in zip(*cols)]


def item_texts(batch: pa.RecordBatch | pa.Table) -> list[str]:
    """One normalised item text per row, in row order."""
    cols = [_column(batch, name) for name in ITEM_TEXT_ORDER]
    return [join_fields(values) for values in zip(*cols)]


def text_key(text: str) -> str:
    """Cache key of a text: sha1 of its UTF-8 bytes (hex)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()
