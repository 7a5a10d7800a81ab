"""The batch keys of the content side, named once.

`TextFeaturizer.transform` gives each row the index of its user and item text in the side's
table (`INDEX`); `gather` replaces those indices by the blocks a model reads (`VECTOR`,
`FALLBACK`, `TOPIC`, `TOKENS`). An index and a block never share a name.
"""

from __future__ import annotations

from m2ctr.schema import HISTORY_KEYS

SIDES = tuple(HISTORY_KEYS)  # ("user", "item")

INDEX = {side: f"text_index_{side}" for side in SIDES}  # int64 [B]: the row of the text in its table
VECTOR = {side: f"text_{side}" for side in SIDES}       # float32 [B, k + 1]: whitened vector, "no text" flag
FALLBACK = {side: f"fb_{side}" for side in SIDES}       # float32 [B, d + 1]: fallback vector, "no text" flag
TOPIC = {side: f"topic_{side}" for side in SIDES}       # float32 [B, c + 1]: text components, "no text" flag
TOKENS = {side: f"tok_{side}" for side in SIDES}        # int64 [B, F, L]: content ids per field

# The float blocks in the order a model concatenates them, and the user/item pairs among them.
FLOAT_BLOCKS = tuple(key for block in (VECTOR, FALLBACK, TOPIC) for key in block.values())
PAIRS = tuple((block["user"], block["item"]) for block in (VECTOR, FALLBACK, TOPIC))
