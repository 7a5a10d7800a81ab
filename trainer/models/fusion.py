"""Fusion: an MMoE backbone gated against a per-scene content tower.

    mmoe_logit    = MMoE(ids, dense)                                   [B, S]
    content       = [text_user, text_item, text_user * text_item, cos(text_user, text_item),
                     fb_user, fb_item, fb_user * fb_item, cos(fb_user, fb_item), cold buckets]
    content_logit = one small MLP per scene over `content`             [B, S]
    alpha         = sigmoid(gate(content))                             [B, S], in (0, 1)
    logit         = (1 - alpha) * mmoe_logit + alpha * content_logit

User and item text vectors share one whitened space (as do the two fallback vectors), so their
element-wise product and cosine are a direct user-item match signal that an MLP over the
plain concatenation would have to discover. The backbone sees the tabular features only
(`backbone_text=True` also feeds it the text blocks): on the sample data the text blocks in
the backbone made it overfit sooner and lowered test AUC (0.735 vs 0.747, one seed). The gate sees only the content side, so it can learn
to lean on text where the ids carry little (new users and items) and on the backbone where
history exists. The cold buckets
(zero / few / warm, from training-day counts) are embedded into the content side because
they say how far the id features can be trusted. `forward` also returns each row's alpha for
its own scene, which the trainer summarises by scene and cold bucket.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .layers import merge_hparams, towers
from .mmoe import MMoE

CONTENT_BLOCKS = ("text_user", "text_item", "fb_user", "fb_item")
PAIRS = (("text_user", "text_item"), ("fb_user", "fb_item"))
COLD_KEYS = ("cold_user", "cold_item")
N_BUCKETS = 3


class Fusion(nn.Module):
    uses_text = True
    defaults: ClassVar[dict] = {**MMoE.defaults, "content_dims": [64, 32], "gate_dims": [32],
                                "cold_dim": 4, "backbone_text": False, "content_dropout": 0.0}

    def __init__(self, spec: dict, **hparams):
        super().__init__()
        self.hparams = hp = merge_hparams(self.defaults, hparams, "fusion")
        blocks = spec.get("blocks", {})
        self.content_blocks = [b for b in CONTENT_BLOCKS if b in blocks]
        if not self.content_blocks:
            raise ValueError(f"fusion needs text blocks {CONTENT_BLOCKS} in spec['blocks'], got {list(blocks)}")
        self.pairs = [(u, i) for u, i in PAIRS if u in blocks and i in blocks and blocks[u] == blocks[i]]
        self.n_scenes = spec["n_scenes"]

        backbone_spec = spec if hp["backbone_text"] else {**spec, "blocks": {}}
        self.backbone = MMoE(backbone_spec, **{k: hp[k] for k in MMoE.defaults})
        self.dropout = nn.Dropout(hp["content_dropout"])
        self.cold = nn.ModuleDict({k: nn.Embedding(N_BUCKETS, hp["cold_dim"]) for k in COLD_KEYS})
        d_content = (sum(blocks[b] for b in self.content_blocks)
                     + sum(blocks[u] + 1 for u, _ in self.pairs)  # product and cosine
                     + len(COLD_KEYS) * hp["cold_dim"])
        self.content = towers(self.n_scenes, d_content, hp["content_dims"])
        gate, d = [], d_content
        for h in hp["gate_dims"]:
            gate += [nn.Linear(d, h), nn.ReLU()]
            d = h
        gate.append(nn.Linear(d, self.n_scenes))
        self.gate = nn.Sequential(*gate)

    def forward(self, batch):
        mmoe_logit = self.backbone(batch)                                   # [B, S]
        content = torch.cat(
            [batch[b] for b in self.content_blocks]
            + [batch[u] * batch[i] for u, i in self.pairs]
            # the last column of a block is its "no text" flag, not part of the vector
            + [F.cosine_similarity(batch[u][:, :-1], batch[i][:, :-1]).unsqueeze(1) for u, i in self.pairs]
            + [self.cold[k](batch[k]) for k in COLD_KEYS], dim=1)           # [B, d_content]
        content = self.dropout(content)
        content_logit = self.content(content).squeeze(-1)                   # [B, S]
        alpha = torch.sigmoid(self.gate(content))                           # [B, S]
        logits = (1 - alpha) * mmoe_logit + alpha * content_logit
        own_alpha = alpha.gather(1, batch["scene"].view(-1, 1)).squeeze(1)  # [B]
        return logits, {"alpha": own_alpha}
