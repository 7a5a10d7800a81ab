"""What a fit reads of the training days: each side's unique texts, how many training rows show
each, and which were shown with a zero/few id. Every block of `embeddings.blocks` is fitted on this
alone, so nothing fitted ever sees a validation or test day."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embeddings.keys import SIDES
from embeddings.tables import key_fields, raw_keys
from embeddings.text import TEXT_FIELDS, join_fields
from m2ctr.schema import WARM


class TrainingTexts:
    def __init__(self):
        self.rows = {side: Counter() for side in SIDES}  # training rows per unique text key
        self.cold = {side: set() for side in SIDES}      # keys shown with a zero/few id
        self.texts: dict[str, dict[str, str]] = {}       # key -> its joined, normalised text

    @classmethod
    def read(cls, batches: Iterable[pa.RecordBatch], cold: Callable[[str, pa.RecordBatch], np.ndarray]):
        """`cold(side, batch)` gives the cold-start bucket of each row's user or item."""
        self = cls()
        for batch in batches:
            for side in SIDES:
                keys = raw_keys(batch, TEXT_FIELDS[side])
                vc = pc.value_counts(keys)
                self.rows[side].update(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))
                is_cold = cold(side, batch) != WARM
                if is_cold.any():
                    self.cold[side].update(pc.unique(keys.filter(pa.array(is_cold))).to_pylist())
        if not self.rows["user"]:
            raise ValueError("TextFeaturizer.fit got no training rows")
        self.texts = {side: {k: join_fields(key_fields(k)) for k in self.rows[side]} for side in SIDES}
        return self

    def keys(self, side: str) -> list[str]:
        """The side's unique text keys, in order of first arrival."""
        return list(self.rows[side])

    def distinct(self) -> list[str]:
        """Both sides' distinct non-empty texts, sorted: each counts once, however busy."""
        return sorted({t for side in SIDES for t in self.texts[side].values() if t})

    def cold_texts(self, side: str) -> list[str]:
        """The distinct non-empty texts of the side's zero/few ids, sorted."""
        return sorted({self.texts[side][k] for k in self.cold[side]} - {""})

    def weighted_fields(self):
        """(field names, raw fields, training rows) of every unique text: what the token vocabulary counts."""
        return ((TEXT_FIELDS[side], key_fields(k), n) for side in SIDES for k, n in self.rows[side].items())
