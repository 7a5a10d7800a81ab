"""PLE: progressive layered extraction with shared and scene-specific experts.

Each extraction layer holds `n_shared` shared experts and `n_specific` experts
per scene, all computed in one batched op. Scene s's gate mixes its own experts
with the shared ones; a shared gate mixes every expert into the input of the
shared experts of the next layer (not needed after the last layer). Scenes are
the tasks of: Tang, Liu, Zhao and Gong, "Progressive Layered Extraction (PLE): A
Novel Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys
2020 (https://doi.org/10.1145/3383313.3412236).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import (
    BatchedLinear,
    BatchedMLP,
    Inputs,
    InputSpec,
    chosen_hyperparameters,
    mix,
    towers,
)


class Extraction(nn.Module):
    def __init__(self, n_scenes, n_specific, n_shared, d_in, dims, first: bool, last: bool):
        super().__init__()
        self.first, self.last = first, last
        self.n_scenes, self.n_specific, self.n_shared = n_scenes, n_specific, n_shared
        self.n_all = n_all = n_scenes * n_specific + n_shared
        # experts are ordered scene 0's, scene 1's, ..., then the shared ones
        chosen = [
            [s * n_specific + k for k in range(n_specific)] + list(range(n_all - n_shared, n_all))
            for s in range(n_scenes)
        ]
        self.register_buffer("chosen", torch.tensor(chosen), persistent=False)  # [S, n_specific+n_shared]
        self.experts = BatchedMLP(n_all, d_in, dims)
        self.scene_gates = BatchedLinear(n_scenes, d_in, n_specific + n_shared)
        self.shared_gate = None if last else nn.Linear(d_in, n_all)
        self.out_dim = self.experts.out_dim

    def forward(self, x) -> torch.Tensor:
        # x: Inputs.parts (embeddings, float inputs) for the first layer, else [B, S+1, d_in]
        # (one input per scene + shared)
        if self.first:
            experts = self.experts.shared(*x)                             # [B, n_all, h]
            scene_in = shared_in = torch.cat(x, dim=1)                    # [B, d_in]
        else:
            b, d = x.shape[0], x.shape[-1]
            scene_in, shared_in = x[:, : self.n_scenes], x[:, -1]
            per_expert = torch.cat([
                scene_in.unsqueeze(2).expand(b, self.n_scenes, self.n_specific, d).reshape(b, -1, d),
                shared_in.unsqueeze(1).expand(b, self.n_shared, d),
            ], dim=1)
            experts = self.experts.each(per_expert)                       # [B, n_all, h]
        gate = self.scene_gates.shared if self.first else self.scene_gates.each
        gates = gate(scene_in).softmax(-1)                    # [B, S, k]
        # spread each scene's k gate weights over all experts (zeros elsewhere) rather than
        # copying each scene's chosen experts out of the big tensor
        full = gates.new_zeros(gates.shape[0], self.n_scenes, self.n_all)
        full = full.scatter(2, self.chosen.expand(gates.shape[0], -1, -1), gates)
        out = mix(full, experts)                                          # [B, S, h]
        if self.last:
            return out
        shared = mix(self.shared_gate(shared_in).softmax(-1).unsqueeze(1), experts)
        return torch.cat([out, shared], dim=1)                            # [B, S+1, h]


class PLE(nn.Module):
    uses_text = False

    def __init__(self, spec: InputSpec, *, emb_dim: int = 16, n_levels: int = 1, n_specific: int = 1,
                 n_shared: int = 2, expert_dims: Sequence[int] = (128, 64), tower_dims: Sequence[int] = (32,)):
        super().__init__()
        self.hparams = chosen_hyperparameters(self, locals())
        if n_levels < 1:
            raise ValueError("ple needs n_levels >= 1")
        self.inputs = Inputs(spec, emb_dim)
        d, levels = self.inputs.out_dim, []
        for level in range(n_levels):
            layer = Extraction(
                spec["n_scenes"], n_specific, n_shared, d, list(expert_dims),
                first=level == 0, last=level == n_levels - 1,
            )
            levels.append(layer)
            d = layer.out_dim
        self.levels = nn.ModuleList(levels)
        self.towers = towers(spec["n_scenes"], d, list(tower_dims))

    def forward(self, batch):
        x = self.inputs.parts(batch)  # the first experts' input gradient skips the float inputs
        for level in self.levels:
            x = level(x)
        return self.towers.each(x).squeeze(-1)                                 # [B, S]
