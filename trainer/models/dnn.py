"""DNN: one MLP over id embeddings and dense features, one output logit per scene.

The embedding-and-MLP baseline of deep CTR models: Covington, Adams and Sargin, "Deep Neural
Networks for YouTube Recommendations", RecSys 2016 (https://doi.org/10.1145/2959100.2959190).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .layers import Inputs, InputSpec, chosen_hyperparameters, mlp


class DNN(nn.Module):
    uses_text = False

    def __init__(self, spec: InputSpec, *, emb_dim: int = 16, hidden: Sequence[int] = (256, 128, 64),
                 dropout: float = 0.0):
        super().__init__()
        self.hparams = chosen_hyperparameters(self, locals())
        self.inputs = Inputs(spec, emb_dim)
        # the body is shared; the last layer gives each scene its own logit (the loss picks the row's)
        self.mlp = mlp(self.inputs.out_dim, list(hidden), dropout, out=spec["n_scenes"])

    def forward(self, batch):
        return self.mlp(self.inputs(batch))
