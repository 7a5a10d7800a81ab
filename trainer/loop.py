"""The training loop: an epoch's batches, the loss and optimisers, early stopping, the content guard.

`train_loop` trains a built model on a `Prepared` fit (`trainer.prepare`) and restores its best
epoch by validation AUC; `content_guard` then decides, on the validation days, whether a fused
model keeps its content side. `score_days` scores days of the table, a share per rank under data
parallelism, for the loop and the run's metrics (`trainer.train`) alike.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import distributed
from . import metrics as M
from .batches import ordered_batches, shuffled_batches, training_shard
from .config import FitConfig
from .prepare import Prepared
from .scoring import own_scene_logit, score, split_output, to_model

# ---------------------------------------------------------------------------- loss and optimisers


def masked_bce(logits, scene, label, scene_weights: torch.Tensor | None = None) -> torch.Tensor:
    """BCE on each row's own-scene logit only, so other scenes' towers get no gradient from it."""
    weight = None if scene_weights is None else scene_weights[scene]
    return F.binary_cross_entropy_with_logits(own_scene_logit(logits, scene), label, weight=weight)


def fit_scene_weights(counts) -> list[float]:
    """Inverse-frequency weights from training rows per scene, scaled to a mean row weight of 1."""
    counts = np.asarray(counts, np.float64)
    w = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
    return (w / ((w * counts).sum() / counts.sum())).tolist()



class Optimizers:
    """Lazy Adam on the id and token tables, AdamW (fused kernel on CPU) on every other weight.

    A batch touches a few thousand rows of the tables, yet a dense embedding gradient makes AdamW
    read and write every row (and its two moment buffers) each step. With sparse gradients
    SparseAdam updates just the batch's rows. The id tables get their own learning rate `emb_lr`:
    at the dense layers' rate they memorise the training ids within one epoch. Token tables
    (`token_lr`) are shared by many rows and can learn faster.
    """

    def __init__(self, model: torch.nn.Module, lr: float, emb_lr: float, weight_decay: float,
                 token_lr: float | None = None, sparse: bool = True):
        self.names = {id(p): name for name, p in model.named_parameters()}
        groups = {"ids": [], "tokens": []}
        for m in model.modules():
            if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and m.max_norm is None:
                m.sparse = sparse
                groups["tokens" if isinstance(m, torch.nn.EmbeddingBag) else "ids"].append(m.weight)
        in_tables = {id(p) for ps in groups.values() for p in ps}
        rest = [p for p in model.parameters() if id(p) not in in_tables]
        fused = all(p.device.type in ("cpu", "cuda") for p in rest)
        self.opts = [torch.optim.AdamW(rest, lr=lr, weight_decay=weight_decay, fused=fused or None)]
        tables = [{"params": groups["ids"], "lr": emb_lr},
                  {"params": groups["tokens"], "lr": token_lr or lr}]
        tables = [g for g in tables if g["params"]]
        if tables:
            # NCCL has no sparse all-reduce: under data parallelism on CUDA the tables take dense
            # gradients and a dense Adam (no weight decay, as for the sparse one)
            self.opts.append(torch.optim.SparseAdam(tables) if sparse else
                             torch.optim.AdamW(tables, weight_decay=0.0, fused=fused or None))

    def zero_grad(self) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=True)

    def step(self) -> None:
        for o in self.opts:
            o.step()

    def moments(self) -> dict[str, torch.Tensor]:
        """Each weight's Adam state, keyed `<weight name>.<exp_avg|exp_avg_sq|step>`: what a run keeps
        so that a refresh continues the optimisation instead of restarting it."""
        out = {}
        for o in self.opts:
            for param, state in o.state.items():
                for key, value in state.items():
                    value = value if torch.is_tensor(value) else torch.tensor(float(value))
                    out[f"{self.names[id(param)]}.{key}"] = value.detach().clone()
        return out

    def load_moments(self, moments: dict[str, torch.Tensor]) -> None:
        """Take up `moments` (as `moments()` gives them) for every weight they name; the learning rates
        stay this optimiser's. A fresh Adam's first steps move every weight by about the learning rate,
        whatever its gradients' noise; with the earlier moments a trained model is only nudged."""
        for o in self.opts:
            dense = not isinstance(o, torch.optim.SparseAdam)
            for group in o.param_groups:
                # as torch's own load_state_dict places it: on the weight's device for the fused and
                # capturable kernels, on the CPU otherwise; SparseAdam counts in a Python int
                on_device = group.get("fused") or group.get("capturable")
                for param in group["params"]:
                    name = self.names[id(param)]
                    if f"{name}.exp_avg" not in moments:
                        continue
                    step = moments[f"{name}.step"]
                    if dense:
                        step = step.to(param.device if on_device else "cpu", torch.float32).clone()
                    else:
                        step = int(step.item())
                    o.state[param] = {
                        "step": step,
                        "exp_avg": moments[f"{name}.exp_avg"].to(param.device).clone(),
                        "exp_avg_sq": moments[f"{name}.exp_avg_sq"].to(param.device).clone(),
                    }

    def decay(self, factor: float) -> None:
        """Scale every learning rate (once per epoch)."""
        for o in self.opts:
            for g in o.param_groups:
                g["lr"] *= factor


def blend_toward(model: torch.nn.Module, start: dict[str, torch.Tensor], share: float) -> None:
    """Move every float weight of `model` back `share` of the way to its value in `start`."""
    with torch.no_grad():
        for name, value in model.state_dict().items():  # views of the weights: changed in place
            if value.is_floating_point():
                value.lerp_(start[name], share)


# ---------------------------------------------------------------------------- the loop


def epoch_batches(p: Prepared, cfg: FitConfig, epoch: int):
    """One epoch of this rank's training batches. Under data parallelism every rank takes as many
    steps as the rank with the most rows (DDP needs them in step); a shorter shard starts over,
    reshuffled, as DistributedSampler pads with repeats."""
    w = p.world
    shard = training_shard(p.table, p.split["train_days"], cfg.seed, epoch, w.rank, w.size)

    def one_pass(repeat: int):
        batches = shuffled_batches(p.table, shard, p.features, cfg.batch_size, cfg.shuffle_buffer,
                                   cfg.seed, epoch, repeat, p.day_shares)
        if not p.simulation.on:
            return batches
        rng = np.random.default_rng([cfg.seed, epoch, repeat, w.rank, 1])
        return (p.simulation(b, p.prep, rng) for b in batches)

    if not w.parallel:
        yield from one_pass(0)
        return
    steps = w.max(-(-p.table.count_rows(shard, p.day_shares) // cfg.batch_size))
    repeat, batches = 0, one_pass(0)
    for _ in range(steps):
        batch = next(batches, None)
        while batch is None:
            repeat += 1
            batches = one_pass(repeat)
            batch = next(batches, None)
        yield batch


def score_days(model, p: Prepared, days: list[str], eval_batch_size: int) -> dict[str, np.ndarray]:
    """Scores of every row of `days`: each rank scores its share of the files, then all gather."""
    w = p.world
    rows = score(distributed.unwrap(model), ordered_batches(p.table, days, p.features, w.rank, w.size,
                                                            eval_batch_size), p.features, p.device)
    return w.gather(rows)


def train_loop(model, p: Prepared, cfg: FitConfig) -> tuple[list[dict], dict[str, np.ndarray], dict]:
    """Optimizers above, early stopping on validation AUC; the best epoch's weights are restored.
    Returns the history, the best epoch's validation scores (the metrics need not score again) and
    the optimiser's moments as they were after the best epoch (kept in the run for a refresh)."""
    device, w = p.device, p.world
    opt = Optimizers(model, cfg.lr, cfg.emb_lr, cfg.weight_decay, cfg.token_lr,
                     sparse=not (w.parallel and device.type == "cuda"))
    if p.moments:
        opt.load_moments(p.moments)
    # a refresh keeps a share of its parent's weights (FitConfig.keep_parent)
    parent = ({k: v.detach().clone() for k, v in model.state_dict().items()}
              if p.parent is not None and cfg.keep_parent else None)
    model = distributed.wrap(model, w)
    sw = (torch.tensor(fit_scene_weights(p.prep.state["scene_counts"]), dtype=torch.float32, device=device)
          if cfg.scene_weights == "balanced" else None)
    # "bfloat16": forward matmuls under autocast (about half the step time on CPUs with
    # avx512_bf16, see bench/trainer.py --ours-bf16); weights, optimiser and evaluation stay float32
    amp = cfg.precision == "bfloat16"
    quiet = cfg.quiet or not w.is_main
    best_auc, best_state, best_epoch, best_val, history = float("-inf"), None, -1, {}, []
    best_moments = {}
    for epoch in range(cfg.epochs):
        model.train()
        bar = tqdm(total=p.n_train_rows // w.size, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   unit="row", unit_scale=True, file=sys.stderr, mininterval=1.0, disable=quiet)
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        for step, arrays in enumerate(epoch_batches(p, cfg, epoch)):
            batch = to_model(arrays, p.features, device)
            rows = len(arrays["label"])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits, _ = split_output(model(batch))
            loss = masked_bce(logits.float(), batch["scene"], batch["label"], sw)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += rows
            loss_sum += loss.item() * rows
            bar.update(rows)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", refresh=False)
        bar.close()
        elapsed = time.perf_counter() - t0  # of the training steps alone: samples/s below
        if parent is not None:
            blend_toward(distributed.unwrap(model), parent, cfg.keep_parent)
        opt.decay(cfg.lr_decay)
        val = score_days(model, p, p.split["val_days"], cfg.eval_batch_size)
        val_auc = M.auc(val["label"], val["probability"]) if val else None
        score_ = -1.0 if val_auc is None else val_auc
        improved = score_ > best_auc
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "val_auc": val_auc,
                        "samples_per_s": seen * w.size / elapsed})
        if not quiet:
            print(f"epoch {epoch + 1}: train loss {loss_sum / seen:.4f}  val AUC {M.fmt(val_auc)}  "
                  f"{seen * w.size / elapsed:,.0f} samples/s{'  *' if improved else ''}", file=sys.stderr)
        if improved:
            best_auc, best_epoch, best_val = score_, epoch, val
            best_state = {k: v.detach().clone() for k, v in distributed.unwrap(model).state_dict().items()}
            best_moments = opt.moments()
        elif epoch - best_epoch >= cfg.patience:
            break
    distributed.unwrap(model).load_state_dict(best_state)
    return history, best_val, best_moments


# How much higher the backbone alone must score on validation to turn the content side off.
GUARD_MARGIN = 0.001


def content_guard(model, p: Prepared, cfg: FitConfig, fused_val: dict) -> tuple[dict | None, dict]:
    """A gated model whose text misleads on the validation days is kept as its backbone alone.

    Text can help on every training day and stop helping after them; nothing a model trains on
    shows that, so it is checked once on the validation days, as early stopping checks the epoch.
    Returns the decision (None for a model without a content side) and the validation scores of
    the model as it is kept."""
    inner = distributed.unwrap(model)
    if not hasattr(inner, "content_on") or not fused_val:
        return None, fused_val
    if not bool(inner.content_on):
        # a refresh of a run whose guard turned the content side off trained and scored without
        # it: those scores are the backbone's, and the fused model is scored now
        alone = fused_val
        inner.content_on.fill_(1.0)
        fused_val = score_days(model, p, p.split["val_days"], cfg.eval_batch_size)
    else:
        inner.content_on.fill_(0.0)
        alone = score_days(model, p, p.split["val_days"], cfg.eval_batch_size)
    fused_auc = M.auc(fused_val["label"], fused_val["probability"])
    alone_auc = M.auc(alone["label"], alone["probability"])
    off = alone_auc > fused_auc + GUARD_MARGIN
    inner.content_on.fill_(0.0 if off else 1.0)
    if not cfg.quiet and p.world.is_main:
        print(f"content guard: backbone alone val AUC {M.fmt(alone_auc)}, fused {M.fmt(fused_auc)}: "
              f"content side {'OFF' if off else 'on'}", file=sys.stderr)
    decision = {"content_on": not off, "fused_val_auc": fused_auc, "backbone_val_auc": alone_auc,
                "margin": GUARD_MARGIN}
    return decision, (alone if off else fused_val)
