"""Building blocks shared by the models: the input layer, content-id pooling, MLPs and batched
expert/tower stacks."""

from __future__ import annotations

import inspect
import math
from typing import TypedDict

import torch
from torch import nn

from embeddings.keys import SIDES, TOKENS
from m2ctr.schema import COLD_BUCKETS, HISTORY_KEYS


def mlp(d_in: int, dims: list[int], dropout: float = 0.0, out: int | None = None) -> nn.Sequential:
    """Linear + ReLU (+ dropout) per hidden width, then an optional linear output layer."""
    layers: list[nn.Module] = []
    for d in dims:
        layers += [nn.Linear(d_in, d), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        d_in = d
    if out is not None:
        layers.append(nn.Linear(d_in, out))
    return nn.Sequential(*layers)


class TokenPooling(nn.Module):
    """Content ids of both sides through ONE table, mean-pooled per field.

    Input `tok_user` [B, F_u, L] and `tok_item` [B, F_i, L] (0 pads). Output [B, out_dim]: every
    pooled field, then the explicit user-item match, the product and the dot of the user's and the
    item's mean field vectors, so "sushi" in the user's queries meets "sushi" in the item's names.
    """

    def __init__(self, tokens: dict, dim: int):
        super().__init__()
        self.table = nn.EmbeddingBag(tokens["n_tokens"], dim, mode="mean", padding_idx=0)
        nn.init.normal_(self.table.weight, std=0.05)
        with torch.no_grad():
            self.table.weight[0].zero_()
        self.fields = {side: tokens["fields"][side] for side in SIDES}
        self.out_dim = (sum(self.fields.values()) + 1) * dim + 1

    def pool(self, tok: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return self.table(tok)
        # The same mean over non-pad tokens from ops ONNX has (it has no embedding_bag with a pad).
        present = (tok != 0).unsqueeze(-1).to(self.table.weight.dtype)
        total = (nn.functional.embedding(tok, self.table.weight) * present).sum(1)
        return total / present.sum(1).clamp(min=1.0)

    def forward(self, batch: dict) -> torch.Tensor:
        pooled = {}
        for side in SIDES:
            tok = batch[TOKENS[side]]
            b, f, length = tok.shape
            pooled[side] = self.pool(tok.reshape(b * f, length)).view(b, f, -1)    # [B, F, d]
        u, v = pooled["user"].mean(1), pooled["item"].mean(1)                    # [B, d]
        return torch.cat([pooled["user"].flatten(1), pooled["item"].flatten(1), u * v,
                          (u * v).sum(1, keepdim=True)], dim=1)


class Inputs(nn.Module):
    """Id embeddings (one table, per-field offsets), pooled content ids when the spec has tokens,
    the point-in-time cold buckets of user and item when the spec has `cold_signals`, dense
    features and any extra float blocks."""

    def __init__(self, spec: dict, emb_dim: int):
        super().__init__()
        cards = list(spec["id_cardinalities"])
        self.embedding = nn.Embedding(sum(cards), emb_dim)
        nn.init.normal_(self.embedding.weight, std=0.05)
        self.register_buffer("offsets", torch.tensor([0, *cards[:-1]]).cumsum(0), persistent=False)
        self.tokens = TokenPooling(spec["tokens"], emb_dim) if spec.get("tokens") else None
        # one vector per (side, bucket); a dense parameter, since every row reads it
        self.cold = (nn.Parameter(torch.randn(len(HISTORY_KEYS), len(COLD_BUCKETS), emb_dim) * 0.05)
                     if spec.get("cold_signals") else None)
        self.blocks = list(spec.get("blocks", {}))
        self.out_dim = (len(cards) * emb_dim + (self.tokens.out_dim if self.tokens else 0)
                        + (len(HISTORY_KEYS) * emb_dim if self.cold is not None else 0)
                        + spec["n_dense"] + sum(spec.get("blocks", {}).values()))

    def parts(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(learned inputs [B, ...] that need an input gradient, constant float inputs [B, ...]);
        `forward` is the two side by side."""
        emb = self.embedding(batch["ids"] + self.offsets).flatten(1)
        if self.tokens is not None:
            emb = torch.cat([emb, self.tokens(batch)], dim=1)
        if self.cold is not None:
            emb = torch.cat([emb, *(self.cold[k][batch[key]] for k, key in enumerate(HISTORY_KEYS.values()))],
                            dim=1)
        rest = torch.cat([batch["dense"], *(batch[b] for b in self.blocks)], dim=1) if self.blocks else batch["dense"]
        return emb, rest

    def forward(self, batch: dict) -> torch.Tensor:
        return torch.cat(self.parts(batch), dim=1)


class BatchedLinear(nn.Module):
    """`n` independent linear maps in one GEMM or bmm; output [B, n, d_out].

    `shared(*parts)`: one input for all n maps, given as column blocks [B, d_k] of it; a block
    after the first needs no input gradient, so it gets none. `each(x)`: one input per map,
    x [B, n, d_in].
    """

    def __init__(self, n: int, d_in: int, d_out: int):
        super().__init__()
        bound = 1 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, d_out).uniform_(-bound, bound))

    def shared(self, *parts: torch.Tensor) -> torch.Tensor:
        n, d_in, d_out = self.weight.shape
        w = self.weight.permute(1, 0, 2).reshape(d_in, n * d_out)
        head, *tail = parts
        if not tail:
            # the bias rides in the GEMM (addmm), not in a second pass over the output
            return torch.addmm(self.bias.reshape(-1), head, w).view(-1, n, d_out)
        # (learned, constant) column blocks: two GEMMs into one output, so the backward computes
        # an input gradient for the learned columns only
        k = head.shape[1]
        out = torch.addmm(self.bias.reshape(-1), torch.cat(tail, dim=1), w[k:])
        # in-place ops are outside autocast: match the dtype autocast gave `out`
        return out.addmm_(head.to(out.dtype), w[:k].to(out.dtype)).view(-1, n, d_out)

    def each(self, x: torch.Tensor) -> torch.Tensor:
        # bmm over maps on transposed views: chains of layers pass strides, not copies
        return torch.baddbmm(self.bias.unsqueeze(1), x.transpose(0, 1), self.weight).transpose(0, 1)


class BatchedMLP(nn.Module):
    """`n` MLPs of the same shape, each layer one BatchedLinear, ReLU between (and after the last
    layer when `last_activation`). `shared(*parts)` and `each(x)` as in BatchedLinear."""

    def __init__(self, n: int, d_in: int, dims: list[int], last_activation: bool = True):
        super().__init__()
        self.layers = nn.ModuleList()
        for d in dims:
            self.layers.append(BatchedLinear(n, d_in, d))
            d_in = d
        self.last_activation = last_activation
        self.out_dim = d_in

    def _chain(self, x: torch.Tensor) -> torch.Tensor:
        """The layers after the first, on the first layer's output."""
        for layer in self.layers[1:]:
            x = layer.each(torch.relu(x))
        return torch.relu(x) if self.last_activation else x

    def shared(self, *parts: torch.Tensor) -> torch.Tensor:
        return self._chain(self.layers[0].shared(*parts))

    def each(self, x: torch.Tensor) -> torch.Tensor:
        return self._chain(self.layers[0].each(x))


def towers(n_scenes: int, d_in: int, dims: list[int]) -> BatchedMLP:
    """One small MLP per scene ending in one logit: [B, n_scenes, d_in] -> [B, n_scenes, 1]."""
    return BatchedMLP(n_scenes, d_in, [*dims, 1], last_activation=False)


class InputSpec(TypedDict):
    """What a model's input holds, from the fitted preprocessing and content side (trainer.prepare)."""

    n_dense: int  # standardised dense columns
    id_fields: list[str]  # user_id, item_id
    id_cardinalities: list[int]  # rows of each field's id table
    n_scenes: int
    scenes: list[int]  # scene values, in the order of the logits' columns
    blocks: dict[str, int]  # extra float blocks (text_user, fb_item, ...) and their widths
    tokens: dict | None  # the content-id table (n_tokens, per_field, fields per side), or None
    cold_signals: bool  # the batch has the point-in-time cold buckets hist_user, hist_item


def hyperparameters(model: type[nn.Module]) -> dict[str, object]:
    """A model's hyperparameters with their defaults: the keyword-only arguments of its __init__."""
    params = inspect.signature(model.__init__).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


def check_hyperparameters(model: type[nn.Module], name: str, given: dict) -> None:
    known = hyperparameters(model)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"model {name} has no hyperparameter {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(known))})")


def chosen_hyperparameters(model: nn.Module, values: dict) -> dict:
    """The hyperparameters a model was built with, JSON-ready (for config.json and reloading)."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in values.items() if k in hyperparameters(type(model))}


def mix(gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Gate-weighted sum of experts: [B, S, E] x [B, E, h] -> [B, S, h], one bmm."""
    return torch.bmm(gates, experts)
