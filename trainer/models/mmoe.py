"""MMoE: K shared experts, one softmax gate and one tower per scene.

All experts run as one batched op and all towers as another, so the cost of a
step does not grow with Python-level loops over experts or scenes. The scenes are
the tasks of: Ma, Zhao, Yi, Chen, Hong and Chi, "Modeling Task Relationships in
Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018
(https://doi.org/10.1145/3219819.3220007).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import BatchedMLP, Inputs, InputSpec, chosen_hyperparameters, mix, towers


class MMoE(nn.Module):
    uses_text = False

    def __init__(self, spec: InputSpec, *, emb_dim: int = 16, n_experts: int = 4,
                 expert_dims: Sequence[int] = (128, 64), tower_dims: Sequence[int] = (32,)):
        super().__init__()
        self.hparams = chosen_hyperparameters(self, locals())
        self.n_scenes, self.n_experts = spec["n_scenes"], n_experts
        self.inputs = Inputs(spec, emb_dim)
        d_in = self.inputs.out_dim
        self.experts = BatchedMLP(self.n_experts, d_in, list(expert_dims))
        self.gates = nn.Linear(d_in, self.n_scenes * self.n_experts)
        self.towers = towers(self.n_scenes, self.experts.out_dim, list(tower_dims))

    def forward(self, batch):
        emb, rest = self.inputs.parts(batch)
        x = torch.cat([emb, rest], dim=1)                                 # [B, d_in]
        # the experts take the two parts: no input gradient is computed for the float columns
        experts = self.experts.shared(emb, rest)                               # [B, E, h]
        gates = self.gates(x).view(-1, self.n_scenes, self.n_experts).softmax(-1)  # [B, S, E]
        mixed = mix(gates, experts)                                       # [B, S, h]
        return self.towers.each(mixed).squeeze(-1)                             # [B, S]
