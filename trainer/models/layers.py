"""Building blocks shared by the models: the input layer and batched expert/tower stacks."""

from __future__ import annotations

import math

import torch
from torch import nn


class Inputs(nn.Module):
    """Id embeddings (one table, per-field offsets) + dense features + any extra float blocks."""

    def __init__(self, spec: dict, emb_dim: int):
        super().__init__()
        cards = list(spec["id_cardinalities"])
        self.embedding = nn.Embedding(sum(cards), emb_dim)
        nn.init.normal_(self.embedding.weight, std=0.05)
        self.register_buffer("offsets", torch.tensor([0, *cards[:-1]]).cumsum(0), persistent=False)
        self.blocks = list(spec.get("blocks", {}))
        self.out_dim = len(cards) * emb_dim + spec["n_dense"] + sum(spec.get("blocks", {}).values())

    def parts(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(id embeddings [B, n_fields*emb_dim], float inputs [B, n_dense + blocks]); `forward`
        is the two side by side."""
        emb = self.embedding(batch["ids"] + self.offsets).flatten(1)
        rest = torch.cat([batch["dense"], *(batch[b] for b in self.blocks)], dim=1) if self.blocks else batch["dense"]
        return emb, rest

    def forward(self, batch: dict) -> torch.Tensor:
        return torch.cat(self.parts(batch), dim=1)


class BatchedLinear(nn.Module):
    """`n` independent linear maps applied in one einsum.

    Input [B, d_in] (the same input for all n), or that input as a pair of column blocks
    (needs an input gradient, constant) as `Inputs.parts` gives it, or [B, n, d_in] (one input
    each); output [B, n, d_out].
    """

    def __init__(self, n: int, d_in: int, d_out: int):
        super().__init__()
        bound = 1 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, d_out).uniform_(-bound, bound))

    def forward(self, x) -> torch.Tensor:
        if isinstance(x, tuple):
            # (embeddings, constant inputs), the columns of one shared input: two GEMMs into one
            # output so the backward computes an input gradient for the embedding columns only
            head, tail = x
            n, d_in, d_out = self.weight.shape
            w = self.weight.permute(1, 0, 2).reshape(d_in, n * d_out)
            k = head.shape[1]
            out = torch.addmm(self.bias.reshape(-1), tail, w[k:])
            # in-place ops are outside autocast: match the dtype autocast gave `out`
            return out.addmm_(head.to(out.dtype), w[:k].to(out.dtype)).view(-1, n, d_out)
        if x.dim() == 2:
            # all n maps share one input: a single [B, d_in] x [d_in, n*d_out] matmul
            n, d_in, d_out = self.weight.shape
            w = self.weight.permute(1, 0, 2).reshape(d_in, n * d_out)
            # the bias rides in the GEMM (addmm), not in a second pass over the [B, n*d_out] output
            return torch.addmm(self.bias.reshape(-1), x, w).view(-1, n, d_out)
        # bmm over experts on transposed views: chains of layers pass strides, not copies
        return torch.baddbmm(self.bias.unsqueeze(1), x.transpose(0, 1), self.weight).transpose(0, 1)


class BatchedMLP(nn.Module):
    """`n` MLPs of the same shape, each layer one BatchedLinear, ReLU between (and after the last
    layer when `last_activation`)."""

    def __init__(self, n: int, d_in: int, dims: list[int], last_activation: bool = True):
        super().__init__()
        self.layers = nn.ModuleList()
        for d in dims:
            self.layers.append(BatchedLinear(n, d_in, d))
            d_in = d
        self.last_activation = last_activation
        self.out_dim = d_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if self.last_activation or i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def towers(n_scenes: int, d_in: int, dims: list[int]) -> BatchedMLP:
    """One small MLP per scene ending in one logit: [B, n_scenes, d_in] -> [B, n_scenes, 1]."""
    return BatchedMLP(n_scenes, d_in, [*dims, 1], last_activation=False)


def merge_hparams(defaults: dict, given: dict, model: str) -> dict:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"model {model} has no hyperparameter {', '.join(unknown)} "
            f"(known: {', '.join(sorted(defaults))})"
        )
    return {**defaults, **given}


def mix(gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Gate-weighted sum of experts: [B, S, E] x [B, E, h] -> [B, S, h], one bmm."""
    return torch.bmm(gates, experts)
