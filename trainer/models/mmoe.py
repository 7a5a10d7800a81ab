"""MMoE: K shared experts, one softmax gate and one tower per scene.

All experts run as one batched op and all towers as another, so the cost of a
step does not grow with Python-level loops over experts or scenes.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .layers import BatchedMLP, Inputs, merge_hparams, mix, towers


class MMoE(nn.Module):
    uses_text = False
    defaults: ClassVar[dict] = {"emb_dim": 16, "n_experts": 4, "expert_dims": [128, 64], "tower_dims": [32]}

    def __init__(self, spec: dict, **hparams):
        super().__init__()
        self.hparams = hp = merge_hparams(self.defaults, hparams, "mmoe")
        self.n_scenes, self.n_experts = spec["n_scenes"], hp["n_experts"]
        self.inputs = Inputs(spec, hp["emb_dim"])
        d_in = self.inputs.out_dim
        self.experts = BatchedMLP(self.n_experts, d_in, hp["expert_dims"])
        self.gates = nn.Linear(d_in, self.n_scenes * self.n_experts)
        self.towers = towers(self.n_scenes, self.experts.out_dim, hp["tower_dims"])

    def forward(self, batch):
        emb, rest = self.inputs.parts(batch)
        x = torch.cat([emb, rest], dim=1)                                 # [B, d_in]
        # the experts take the two parts: no input gradient is computed for the float columns
        experts = self.experts.shared(emb, rest)                               # [B, E, h]
        gates = self.gates(x).view(-1, self.n_scenes, self.n_experts).softmax(-1)  # [B, S, E]
        mixed = mix(gates, experts)                                       # [B, S, h]
        return self.towers.each(mixed).squeeze(-1)                             # [B, S]
