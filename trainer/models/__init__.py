"""Model registry: `MODELS[name]` is a class built as `Model(spec, **hparams)`.

Each model's hyperparameters are the keyword-only arguments of its `__init__`, with their defaults
in the signature (`layers.hyperparameters` lists them; `--hp KEY=VALUE` sets them), and its
docstring cites the paper it implements. `spec` (`layers.InputSpec`) describes the input:
`n_dense`, `id_fields`, `id_cardinalities`, `n_scenes`, `blocks` ({name: width} of extra float
blocks such as `text_user`, `fb_item`; empty when the run uses no vectors) and `tokens` (the
content-id table: `n_tokens`, `per_field`, `fields` per side; None when the run uses no tokens)
and `cold_signals` (True: the batch has the point-in-time cold buckets `hist_user`, `hist_item`
and `Inputs` embeds them). `forward(batch)` returns logits
[B, n_scenes] (or [B, 1]), optionally with a dict of per-row extras. A class attribute `uses_text` tells the trainer to
attach the content side (vectors, fallback vectors and tokens); a class attribute `cold_start`
gives the cold-start simulation a fit uses by default (trainer.coldstart).
"""

from .dnn import DNN
from .fusion import Fusion
from .mmoe import MMoE
from .ple import PLE

MODELS = {"dnn": DNN, "mmoe": MMoE, "ple": PLE, "fusion": Fusion}
