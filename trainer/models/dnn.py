"""DNN: one MLP over id embeddings and dense features, one output logit per scene."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from .layers import Inputs, merge_hparams


class DNN(nn.Module):
    uses_text = False
    defaults: ClassVar[dict] = {"emb_dim": 16, "hidden": [256, 128, 64], "dropout": 0.0}

    def __init__(self, spec: dict, **hparams):
        super().__init__()
        self.hparams = hp = merge_hparams(self.defaults, hparams, "dnn")
        self.inputs = Inputs(spec, hp["emb_dim"])
        layers, d = [], self.inputs.out_dim
        for h in hp["hidden"]:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(hp["dropout"])]
            d = h
        # the body is shared; the last layer gives each scene its own logit (the loss picks the row's)
        layers.append(nn.Linear(d, spec["n_scenes"]))
        self.mlp = nn.Sequential(*layers)

    def forward(self, batch):
        return self.mlp(self.inputs(batch))
