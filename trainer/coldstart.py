"""Cold-start simulation: training rows shown as if their user or item were new.

DropoutNet (Volkovs et al., NeurIPS 2017): with probability `p_user` (`p_item`), independently per
training row and side, the row's id takes the new-id row (`trainer.preprocessing.NEW_ID`). Of those
rows, a share `mask_history` also shows the side without any history: its point-in-time cold signal
says "no history" and the side's history features (and the pair's, which a new user or item cannot
have) take the values a row without history has in its scene, as on an item's first day. The rest
keep their history and cold signal, as a test row of an item first seen after the training days has
them: an id the model cannot know that already has a few days of history (about a third of the
demo's test rows on items unknown to the model are such rows). Both cases occur at test time, so
both are trained. The content side is left as it is, so the content tower and the gate learn to
carry rows whose ids say nothing.

It is applied in one place, to the batches of a training epoch (`trainer.loop.epoch_batches`):
validation, test, `predict` and serving batches are built by `Features` alone and never pass here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from m2ctr.schema import HISTORY_FAMILIES, HISTORY_KEYS, ZERO

from .preprocessing import NEW_ID, Preprocessor

SIDES = tuple(HISTORY_KEYS)  # ("user", "item"), in the order of the id columns


@dataclass(frozen=True)
class ColdStartSimulation:
    p_user: float = 0.0
    p_item: float = 0.0
    mask_history: float = 0.0  # share of the simulated rows whose history is hidden too

    def __post_init__(self):
        object.__setattr__(self, "mask_history", float(self.mask_history))  # True/False: all/none
        for name in ("p_user", "p_item", "mask_history"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"cold-start simulation {name} must be in [0, 1], got {p}")

    @property
    def on(self) -> bool:
        return self.p_user > 0 or self.p_item > 0

    def __call__(self, arrays: dict[str, np.ndarray], prep: Preprocessor,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A copy of one training batch with the drawn rows' sides made new; the input is untouched."""
        if not self.on:
            return arrays
        n = len(arrays["label"])
        out = dict(arrays)
        out["ids"] = arrays["ids"].copy()
        hidden = {}  # per side, the simulated rows that also hide their history
        for k, side in enumerate(SIDES):
            p = self.p_user if side == "user" else self.p_item
            new = rng.random(n) < p
            out["ids"][new, k] = NEW_ID
            hidden[side] = new & (rng.random(n) < self.mask_history)
            if self.mask_history:
                out[HISTORY_KEYS[side]] = np.where(hidden[side], ZERO, arrays[HISTORY_KEYS[side]])
        if self.mask_history:
            hidden["pair"] = hidden["user"] | hidden["item"]
            empty = prep.no_history(arrays["scene"])
            columns = prep.state["dense_columns"]
            dense = arrays["dense"].copy()
            for family, (features, _) in HISTORY_FAMILIES.items():
                rows = np.flatnonzero(hidden[family])
                cols = [columns.index(c) for c in features]
                dense[np.ix_(rows, cols)] = empty[np.ix_(rows, cols)]
            out["dense"] = dense
        return out
