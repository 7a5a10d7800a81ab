"""DNN: one MLP over id embeddings and dense features, one output logit per scene."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from .layers import Inputs, merge_hparams, mlp


class DNN(nn.Module):
    uses_text = False
    defaults: ClassVar[dict] = {"emb_dim": 16, "hidden": [256, 128, 64], "dropout": 0.0}

    def __init__(self, spec: dict, **hparams):
        super().__init__()
        self.hparams = hp = merge_hparams(self.defaults, hparams, "dnn")
        self.inputs = Inputs(spec, hp["emb_dim"])
        # the body is shared; the last layer gives each scene its own logit (the loss picks the row's)
        self.mlp = mlp(self.inputs.out_dim, hp["hidden"], hp["dropout"], out=spec["n_scenes"])

    def forward(self, batch):
        return self.mlp(self.inputs(batch))
