"""Fusion: an MMoE backbone gated against a per-scene content tower.

    mmoe_logit    = MMoE(ids, dense)                                   [B, S]
    content       = [tokens: pooled fields, u_tok * i_tok, u_tok . i_tok,
                     text_user, text_item, text_user * text_item, cos(text_user, text_item),
                     fb_user, fb_item, fb_user * fb_item, cos(fb_user, fb_item),
                     topic_user, topic_item, topic_user * topic_item, cos(...), cold buckets]
    content_logit = one small MLP per scene over `content`             [B, S]
    alpha         = sigmoid(gate(content) + cold_bias[hist_user, hist_item]
                            + new_bias[user id new, item id new])      [B, S], in (0, 1)
    logit         = (1 - alpha) * mmoe_logit + alpha * content_logit   (mix="convex")
                  = mmoe_logit + alpha * content_logit                 (mix="residual")
                  = logit((1 - alpha) * sigmoid(mmoe_logit)
                          + alpha * sigmoid(content_logit))            (mix="probability")

The content ids (entities and title words, one table for both sides) carry the topic signal
that frozen sentence vectors of short entity lists separate only weakly; the whitened vectors and
the fallback vectors (sentence vectors for zero/few ids) add what a pretrained encoder knows about
words never seen in training; the text components (TF-IDF -> SVD over the training texts of both
sides) are the same topic signal as dense, unsupervised coordinates that need no learning. User and item vectors share one space, so their product and cosine
are a direct match signal. The backbone sees the tabular features only (`backbone_text=True` also
feeds it the vector blocks). The gate sees only the content side, so it can lean on content where
the ids carry little (new users and items) and on the backbone where history exists; its bias
starts at `gate_bias` (alpha about 0.12 at -2), so the model starts as its backbone and moves
toward the content only where that lowers the loss. The cold buckets (zero / few / warm: the
row's own user's and item's impressions before its day, `hist_user` / `hist_item`) say how far the
id features can be trusted; the gate reads them twice, through the content input and directly as a
learned bias on alpha's logit per (user bucket, item bucket, scene), and as directly whether each
id took the new-id row (an id the model cannot know, trainer.preprocessing), so "this item is new"
moves alpha by itself rather than through a few of many gate inputs. Trained with the cold-start
simulation (`cold_start`, trainer.coldstart), rows whose ids say nothing are common in training, as
they are at test time. `forward` also returns each row's alpha for its own scene, which the
trainer summarises by scene and cold bucket; `sides` gives the two logits and the gate's apart
(`bench/fusion_sides.py` scores each side alone by cold bucket).

`mix="probability"` mixes the two sides' click probabilities, a mixture of experts in the strict
sense: each side's output is bounded, so alpha is the weight of the content side's prediction and
cannot be traded against the scale of the content logit, as it can in the convex mix of logits.
The loss and everything downstream (calibration, export, serving) see the logit of the mixture,
computed from log p and log(1 - p).

The backbone is MMoE (Ma et al., KDD 2018, https://doi.org/10.1145/3219819.3220007); dropping a
row's ids in training so the content side learns to stand in for them follows DropoutNet
(Volkovs, Yu and Poutanen, "DropoutNet: Addressing Cold Start in Recommender Systems", NeurIPS
2017, https://papers.nips.cc/paper/7081-dropoutnet-addressing-cold-start-in-recommender-systems).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from embeddings.keys import FLOAT_BLOCKS, PAIRS
from m2ctr.schema import COLD_BUCKETS, HISTORY_KEYS

from ..preprocessing import NEW_ID
from .layers import InputSpec, TokenPooling, chosen_hyperparameters, hyperparameters, mlp, towers
from .mmoe import MMoE

COLD_KEYS = tuple(HISTORY_KEYS.values())
MIXES = ("convex", "residual", "probability")


def log_add_exp(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log(exp(x) + exp(y)) without overflow, from operations the ONNX exporter has."""
    return torch.maximum(x, y) + torch.log1p(torch.exp(-(x - y).abs()))


def mixture_logit(backbone: torch.Tensor, content: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """logit((1 - alpha) * sigmoid(backbone) + alpha * sigmoid(content)) with alpha = sigmoid(gate),
    from log p and log(1 - p) so that no probability is rounded to 0 or 1 on the way."""
    log_keep, log_alpha = F.logsigmoid(-gate), F.logsigmoid(gate)
    log_p = log_add_exp(log_keep + F.logsigmoid(backbone), log_alpha + F.logsigmoid(content))
    log_q = log_add_exp(log_keep + F.logsigmoid(-backbone), log_alpha + F.logsigmoid(-content))
    return log_p - log_q


class Fusion(nn.Module):
    uses_text = True
    # The cold-start simulation a fit uses unless told otherwise (trainer.coldstart; README, "Cold
    # start"): 0.1/0.2 scored best on the demo sample's validation day of 0/0, 0.1/0.2 and 0.2/0.5.
    # Half the simulated rows hide their history: at test time an id the model cannot know comes
    # both on its first day and with a few days of history. A validation window of two days, which
    # holds both, scores the half at least as well as either extreme (seed 0: 0.7906, against
    # 0.7895 with history kept and 0.7904 with it hidden; README, "Cold start").
    cold_start: ClassVar[dict] = {"p_user": 0.1, "p_item": 0.2, "mask_history": 0.5}

    def __init__(self, spec: InputSpec, *,
                 # the MMoE backbone's
                 emb_dim: int = 16, n_experts: int = 4, expert_dims: Sequence[int] = (128, 64),
                 tower_dims: Sequence[int] = (32,),
                 # the content tower and the gate
                 content_dims: Sequence[int] = (64, 32), gate_dims: Sequence[int] = (32,), cold_dim: int = 4,
                 token_dim: int = 16, backbone_text: bool = False, content_dropout: float = 0.4,
                 gate_bias: float = -2.0, mix: str = "convex", content_cold: bool = True):
        super().__init__()
        self.hparams = hp = chosen_hyperparameters(self, locals())
        if mix not in MIXES:
            raise ValueError(f"fusion mix must be one of {', '.join(MIXES)}, got {mix!r}")
        blocks = spec.get("blocks", {})
        self.vector_blocks = [b for b in FLOAT_BLOCKS if b in blocks]
        self.tokens = TokenPooling(spec["tokens"], token_dim) if spec.get("tokens") else None
        if not self.vector_blocks and self.tokens is None:
            raise ValueError(f"fusion needs text blocks {FLOAT_BLOCKS} or tokens in its spec, got {list(blocks)}")
        self.pairs = [(u, i) for u, i in PAIRS if u in blocks and i in blocks and blocks[u] == blocks[i]]
        self.n_scenes = spec["n_scenes"]

        backbone_spec = {**spec, "tokens": None}
        if not backbone_text:
            backbone_spec["blocks"] = {}
        self.backbone = MMoE(backbone_spec, **{k: hp[k] for k in hyperparameters(MMoE)})
        # the content input is wide (about 1,400 columns, most of them the fallback sentence vectors)
        # and text that says nothing about clicks is easy to memorise through it. On the demo
        # sample's validation day, with the 128-wide whitened vectors of an earlier default,
        # dropout 0, 0.2 and 0.4 scored 0.7958 / 0.7977 / 0.7986 on its table and 0.7512 / 0.7510 /
        # 0.7560 on its copy with text shuffled across rows (seed 0; README, "Text unrelated to clicks")
        self.dropout = nn.Dropout(content_dropout)
        # dense parameters, not embedding tables: every row reads them, so they take the dense rate
        self.cold = nn.Parameter(torch.randn(len(COLD_KEYS), len(COLD_BUCKETS), cold_dim) * 0.05)
        self.cold_bias = nn.Parameter(torch.zeros(len(COLD_BUCKETS), len(COLD_BUCKETS), self.n_scenes))
        self.new_bias = nn.Parameter(torch.zeros(2, 2, self.n_scenes))
        self.d_text = ((self.tokens.out_dim if self.tokens else 0)
                       + sum(blocks[b] for b in self.vector_blocks)
                       + sum(blocks[u] + 1 for u, _ in self.pairs))  # product and cosine
        d_content = self.d_text + len(COLD_KEYS) * cold_dim
        # content_cold=False: the tower reads the text alone, so only alpha can say how far the
        # text is to be trusted for a row of a given cold state
        self.content = towers(self.n_scenes, d_content if content_cold else self.d_text,
                              list(content_dims))
        self.gate = mlp(d_content, list(gate_dims), out=self.n_scenes)
        nn.init.constant_(self.gate[-1].bias, gate_bias)
        # The content guard (trainer.loop.content_guard): 0 when the backbone alone scored higher on
        # the validation days than the fused model. A buffer, so it is saved, loaded and exported
        # with the weights.
        self.register_buffer("content_on", torch.tensor(1.0))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "content_on", torch.tensor(1.0))  # runs saved before the guard
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def content_input(self, batch) -> torch.Tensor:
        """The content side of each row [B, d_content]."""
        parts = [self.tokens(batch)] if self.tokens is not None else []
        parts += [batch[b] for b in self.vector_blocks]
        parts += [batch[u] * batch[i] for u, i in self.pairs]
        # the last column of a vector block is its "no text" flag, not part of the vector
        parts += [F.cosine_similarity(batch[u][:, :-1], batch[i][:, :-1]).unsqueeze(1) for u, i in self.pairs]
        parts += [self.cold[k][batch[key]] for k, key in enumerate(COLD_KEYS)]
        return torch.cat(parts, dim=1)

    def sides(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The backbone's logit, the content tower's logit and the gate's logit (alpha before the
        sigmoid), each [B, S]."""
        mmoe_logit = self.backbone(batch)                                   # [B, S]
        content = self.dropout(self.content_input(batch))                   # [B, d_content]
        tower_input = content if self.hparams["content_cold"] else content[:, : self.d_text]
        content_logit = self.content.shared(tower_input).squeeze(-1)        # [B, S]
        new = (batch["ids"] == NEW_ID).long()                              # [B, 2] ids the model cannot know
        gate = (self.gate(content) + self.cold_bias[batch[COLD_KEYS[0]], batch[COLD_KEYS[1]]]
                + self.new_bias[new[:, 0], new[:, 1]])
        return mmoe_logit, content_logit, gate

    def forward(self, batch):
        mmoe_logit, content_logit, gate = self.sides(batch)
        alpha = torch.sigmoid(gate) * self.content_on  # 0 once the content guard turned the content side off
        mix = self.hparams["mix"]
        if mix == "probability":
            logits = torch.where(self.content_on > 0, mixture_logit(mmoe_logit, content_logit, gate), mmoe_logit)
        else:
            base = mmoe_logit if mix == "residual" else (1 - alpha) * mmoe_logit
            logits = base + alpha * content_logit
        own_alpha = alpha.gather(1, batch["scene"].view(-1, 1)).squeeze(1)  # [B]
        return logits, {"alpha": own_alpha}
