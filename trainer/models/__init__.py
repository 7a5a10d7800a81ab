"""Model registry: `MODELS[name]` is a class built as `Model(spec, **hparams)`.

`spec` describes the input: `n_dense`, `id_fields`, `id_cardinalities`,
`n_scenes`, and `blocks` ({name: width} of extra float blocks such as
`text_user`, `fb_item`; empty when the run uses no text). `forward(batch)`
returns logits [B, n_scenes] (or [B, 1]), optionally with a dict of per-row
extras. A class attribute `uses_text` tells the trainer to attach text blocks.
"""

from __future__ import annotations

import importlib

from .dnn import DNN
from .mmoe import MMoE
from .ple import PLE


class _Lazy:
    """Imports a model module on first use, so optional models cost nothing until chosen."""

    def __init__(self, module: str, attr: str):
        self.module, self.attr = module, attr

    def load(self):
        return getattr(importlib.import_module(self.module, __name__), self.attr)


MODELS = {"dnn": DNN, "mmoe": MMoE, "ple": PLE, "fusion": _Lazy(".fusion", "Fusion")}


def get_model(name: str):
    entry = MODELS[name]
    return entry.load() if isinstance(entry, _Lazy) else entry
