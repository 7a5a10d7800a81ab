"""fit and evaluate: preparing a fit, the training loop, the metrics and the run directory.

`fit` is three steps: `prepare` (table, split, fitted preprocessing and content side, model input
spec), `build` (the model) and `train_and_write` (the loop, metrics, the run directory). What a run
directory holds, and how it is written whole or not at all, is `trainer.artifacts.RunDir`'s; this
module only says what goes in. Scoring rows, loading a finished run back and `predict` are
`trainer.scoring`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from tqdm import tqdm

from embeddings.options import TextConfig
from m2ctr.schema import ID_COLUMNS

from . import calibration as C
from . import distributed
from . import metrics as M
from .artifacts import RunDir, warehouse_record
from .coldstart import ColdStartSimulation
from .config import FitConfig
from .data import (
    EVAL_PARTS,
    REQUIRED_COLUMNS,
    TEXT_FIT_COLUMNS,
    Features,
    Preprocessor,
    Table,
    TrainerError,
    history_bucket,
    ordered_batches,
    shuffled_batches,
    split_days,
    training_shard,
)
from .models import MODELS
from .models.layers import Inputs, check_hyperparameters
from .scoring import (
    Run,
    load_run,
    own_scene_logit,
    resolve_device,
    score,
    split_output,
    to_model,
)

# ---------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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

    def decay(self, factor: float) -> None:
        """Scale every learning rate (once per epoch)."""
        for o in self.opts:
            for g in o.param_groups:
                g["lr"] *= factor


# ---------------------------------------------------------------------------- fit, step 1: prepare


@dataclass
class Prepared:
    table: Table
    split: dict[str, list[str]]
    prep: Preprocessor
    features: Features
    spec: dict
    device: torch.device
    threads: int
    world: distributed.World = field(default_factory=distributed.World)
    simulation: ColdStartSimulation = field(default_factory=ColdStartSimulation)
    parent: Run | None = None  # the run a daily refresh starts from
    start: torch.nn.Module | None = None  # a refresh's model: the parent's, its id tables grown
    refresh_rows: int | None = None  # its training rows (the preprocessing counts the earlier run's)

    @property
    def n_train_rows(self) -> int:
        return self.prep.state["n_train_rows"] if self.refresh_rows is None else self.refresh_rows


def content_config(cfg: FitConfig, uses_text: bool) -> TextConfig | None:
    """The content side a run uses, or None: every part for a model that uses text, else those asked for."""
    content = cfg.content.with_all_parts() if uses_text else cfg.content
    if content.fallback and not content.vectors:
        raise TrainerError("--fallback needs --text (or a model that uses text)")
    return content if content.any_part() else None


def simulation_config(cfg: FitConfig) -> ColdStartSimulation:
    """The cold-start simulation of a run: the options given, the model's defaults otherwise."""
    given = {"p_user": cfg.cold_user, "p_item": cfg.cold_item, "mask_history": cfg.cold_mask_history}
    values = {**getattr(MODELS[cfg.model], "cold_start", {}), **{k: v for k, v in given.items() if v is not None}}
    try:
        return ColdStartSimulation(**values)
    except ValueError as e:
        raise TrainerError(str(e)) from None


def prepare(cfg: FitConfig) -> Prepared:
    if cfg.model not in MODELS:
        raise TrainerError(f"unknown model {cfg.model!r} (known: {', '.join(MODELS)})")
    seed_everything(cfg.seed)
    threads = cfg.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    device = resolve_device(cfg.device)
    world = distributed.init(device)
    device = world.device(device)
    content = content_config(cfg, MODELS[cfg.model].uses_text)
    simulation = simulation_config(cfg)
    table = Table(cfg.table, need_text=content is not None)
    split = split_days(table.days, cfg.val_days, cfg.test_days)
    if cfg.init_from:
        return prepare_refresh(cfg, table, split, device, threads, world, simulation)
    # the content side's runs (and every simulated one) read the point-in-time cold signals and
    # give ids without history the learned new-id row
    cold_signals = content is not None or simulation.on
    prep = Preprocessor.fit(table.batches(split["train_days"], REQUIRED_COLUMNS),
                            min_count=cfg.min_count, max_vocab=cfg.max_vocab, hash_buckets=cfg.hash_buckets,
                            new_ids=cold_signals)
    featurizer = None
    if content is not None:
        from embeddings import TextFeaturizer

        def cold(side, batch):
            # a simulated row of any id reads its text's sentence vector: encode them all
            return np.zeros(batch.num_rows, np.int64) if simulation.on else history_bucket(batch, side)

        featurizer = TextFeaturizer(content).fit(table.batches(split["train_days"], TEXT_FIT_COLUMNS), cold)
    spec = {
        "n_dense": prep.n_dense,
        "id_fields": ["user_id", "item_id"],
        "id_cardinalities": prep.id_cardinalities,
        "n_scenes": len(prep.scenes),
        "scenes": prep.scenes,
        "blocks": featurizer.widths if featurizer is not None else {},
        "tokens": featurizer.token_spec if featurizer is not None else None,
        "cold_signals": cold_signals,
    }
    return Prepared(table, split, prep, Features(prep, featurizer), spec, device, threads, world, simulation)


def prepare_refresh(cfg: FitConfig, table: Table, split: dict, device, threads: int, world, simulation) -> Prepared:
    """A daily refresh: the earlier run's weights, preprocessing and content side, trained on the
    training days after its own plus its last `replay_days` training days.

    Only the new days are read to update the preprocessing: their ids are added to the training-day
    counts, and an id that now reaches `min_count` gets its own row in the id table, initialised
    with the row it read before (the new-id row or its hash bucket), so the grown model scores
    every old row as its parent did. Scalers, scenes and the content side are the parent's; texts
    new since then are encoded on the way, as at serving time, and new tokens take the hash buckets
    until the next full fit."""
    # the texts are encoded through this fit's cache, not the one the earlier run was given
    parent = load_run(Path(cfg.init_from), str(device), cache_dir=cfg.content.cache_dir)
    torch.set_num_threads(threads)  # load_run set the earlier run's count
    if parent.cfg["model"] != cfg.model:
        raise TrainerError(f"--init-from {cfg.init_from} is a {parent.cfg['model']} run, not {cfg.model}")
    if cfg.replay_days < 0:
        raise TrainerError("--replay-days must be 0 or more")
    before = parent.cfg["split"]["train_days"]
    new = [d for d in split["train_days"] if d > before[-1]]
    if not new:
        raise TrainerError(f"nothing to refresh on: the table's training days end on {split['train_days'][-1]}, "
                           f"and {cfg.init_from} was trained up to {before[-1]}")
    replay = [d for d in before if d in split["train_days"]][-cfg.replay_days:] if cfg.replay_days else []
    split = {**split, "train_days": replay + new}
    prep = parent.prep.extend(table.batches(new, ID_COLUMNS), parent.cfg["config"]["max_vocab"])
    spec = {**parent.cfg["spec"], "id_cardinalities": prep.id_cardinalities}
    model = MODELS[cfg.model](spec, **parent.cfg["hparams"])
    model.load_state_dict(grown_state(parent.model, prep.id_rows_before(parent.prep)))
    return Prepared(table, split, prep, Features(prep, parent.features.featurizer), spec, device, threads, world,
                    simulation, parent, model, table.count_rows(table.fragments(split["train_days"])))


def grown_state(model: torch.nn.Module, rows_before: np.ndarray) -> dict:
    """`model`'s weights with every id table (an `Inputs` embedding) re-indexed: row i of the new
    table is row `rows_before[i]` of the old one."""
    state = model.state_dict()
    take = torch.from_numpy(rows_before)
    for name, module in model.named_modules():
        if isinstance(module, Inputs):
            key = f"{name}.embedding.weight" if name else "embedding.weight"
            state[key] = state[key][take.to(state[key].device)]
    return state


# ---------------------------------------------------------------------------- fit, step 2: build


def build(cfg: FitConfig, spec: dict) -> torch.nn.Module:
    try:
        check_hyperparameters(MODELS[cfg.model], cfg.model, cfg.hp)
        return MODELS[cfg.model](spec, **cfg.hp)
    except (TypeError, ValueError) as e:
        raise TrainerError(f"cannot build {cfg.model}: {e}") from None


# ---------------------------------------------------------------------------- fit, step 3: train and write


def epoch_batches(p: Prepared, cfg: FitConfig, epoch: int):
    """One epoch of this rank's training batches. Under data parallelism every rank takes as many
    steps as the rank with the most rows (DDP needs them in step); a shorter shard starts over,
    reshuffled, as DistributedSampler pads with repeats."""
    w = p.world
    shard = training_shard(p.table, p.split["train_days"], cfg.seed, epoch, w.rank, w.size)

    def one_pass(repeat: int):
        batches = shuffled_batches(p.table, shard, p.features, cfg.batch_size, cfg.shuffle_buffer,
                                   cfg.seed, epoch, repeat)
        if not p.simulation.on:
            return batches
        rng = np.random.default_rng([cfg.seed, epoch, repeat, w.rank, 1])
        return (p.simulation(b, p.prep, rng) for b in batches)

    if not w.parallel:
        yield from one_pass(0)
        return
    steps = w.max(-(-p.table.count_rows(shard) // cfg.batch_size))
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


def train_loop(model, p: Prepared, cfg: FitConfig) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Optimizers above, early stopping on validation AUC; the best epoch's weights are restored.
    Returns the history and the best epoch's validation scores (the metrics need not score again)."""
    device, w = p.device, p.world
    opt = Optimizers(model, cfg.lr, cfg.emb_lr, cfg.weight_decay, cfg.token_lr,
                     sparse=not (w.parallel and device.type == "cuda"))
    model = distributed.wrap(model, w)
    sw = (torch.tensor(fit_scene_weights(p.prep.state["scene_counts"]), dtype=torch.float32, device=device)
          if cfg.scene_weights == "balanced" else None)
    # "bfloat16": forward matmuls under autocast (about half the step time on CPUs with
    # avx512_bf16, see bench/trainer.py --ours-bf16); weights, optimiser and evaluation stay float32
    amp = cfg.precision == "bfloat16"
    quiet = cfg.quiet or not w.is_main
    best_auc, best_state, best_epoch, best_val, history = float("-inf"), None, -1, {}, []
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
        opt.decay(cfg.lr_decay)
        elapsed = time.perf_counter() - t0
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
        elif epoch - best_epoch >= cfg.patience:
            break
    distributed.unwrap(model).load_state_dict(best_state)
    return history, best_val


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


def run_config(cfg: FitConfig, p: Prepared, model) -> dict:
    return {
        "config": cfg.to_dict(),
        "model": cfg.model,
        "hparams": p.parent.cfg["hparams"] if p.parent is not None else getattr(model, "hparams", dict(cfg.hp)),
        "spec": p.spec,
        "content": p.features.featurizer.cfg.__dict__ if p.features.featurizer is not None else None,
        "cold_start_simulation": dataclasses.asdict(p.simulation),
        "split": p.split,
        "parent": str(Path(cfg.init_from).resolve()) if cfg.init_from else None,
        "table": str(Path(cfg.table).resolve()),
        "warehouse": warehouse_record(cfg.table),
        "threads": p.threads,
        "device": str(p.device),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "pyarrow": pa.__version__},
    }


def training_ctr(p: Prepared) -> dict:
    """Click rate of the training days, overall and per scene index: normalized entropy's baseline."""
    clicks = np.zeros(len(p.prep.scenes))
    rows = np.zeros(len(p.prep.scenes))
    for batch in p.table.batches(p.split["train_days"], ["label", "scene"]):
        idx = p.prep.scene_index.get_indexer(batch.column("scene").to_numpy())
        np.add.at(rows, idx, 1)
        np.add.at(clicks, idx, batch.column("label").to_numpy(zero_copy_only=False))
    return M.click_rates(clicks, rows)


def compute_metrics(model, p: Prepared, model_name: str, eval_batch_size: int, run: RunDir | None = None,
                    calibration: str | C.Calibration = "none", val: dict | None = None) -> tuple[dict, C.Calibration]:
    """metrics.json for the validation and test days, and the calibration its probabilities went
    through: a method name fits one on the validation rows, a Calibration is applied as it is. The
    per-row scores, calibrated and raw, go to `run`. `val`: the validation days' scores, when the
    model at hand has scored them already."""
    result = {"model": model_name,
              "split": {**p.split, "rows": {"train": p.n_train_rows}}}
    parts = {}
    for part in EVAL_PARTS:
        parts[part] = rows = (val if part == "val" and val else
                              score_days(model, p, p.split[f"{part}_days"], eval_batch_size))
        if not rows:
            raise TrainerError(f"empty split: no rows on day(s) {', '.join(p.split[f'{part}_days'])}")
    if isinstance(calibration, str):
        val = parts["val"]
        calibration = C.fit(calibration, val["label"], val["probability"], val["scene"])
    rates = training_ctr(p)
    extras_summary = {}
    for part, rows in parts.items():
        raw = rows["probability_raw"] = rows["probability"]
        rows["probability"] = calibration(raw, rows["scene"])
        result["split"]["rows"][part] = len(rows["label"])
        result[part] = M.evaluate(rows, rows["probability"], p.spec["scenes"])
        result[part]["calibration"].update(
            method=calibration.method, **M.calibration_effect(rows, raw, rows["probability"], p.spec["scenes"], rates))
        extras = {k: v for k, v in rows.items() if k not in (*M.ROW_KEYS, "probability", "probability_raw")}
        if extras:
            extras_summary[part] = M.summarise_extras(rows, extras, p.spec["scenes"])
        if run is not None:
            run.write_scores(part, score_columns(rows, p.spec["scenes"]))
    if extras_summary:
        result["extras"] = extras_summary
    return result, calibration


def score_columns(rows: dict, scenes: list[int]) -> dict:
    """The columns of a scores file: every scored array but the user key, scenes as their values."""
    columns = {k: v for k, v in rows.items() if k != "user_key"}
    columns["scene"] = np.asarray(scenes)[rows["scene"]]
    return columns


def calibration_method(cfg: FitConfig, p: Prepared) -> str:
    """The calibration a fit asks for; under `auto` a refresh keeps its parent's choice (the choice
    is model selection, like the hyperparameters it keeps) and only refits the maps."""
    inherited = p.parent.calibration.method if p.parent is not None else "none"
    return inherited if cfg.calibration == "auto" and inherited != "none" else cfg.calibration


def train_and_write(cfg: FitConfig, p: Prepared, model, out: Path) -> Path:
    """Train, then write the run; under data parallelism every rank trains and scores, rank 0 writes."""
    n_params = sum(q.numel() for q in model.parameters())
    if p.world.is_main:
        print(f"{cfg.model}: train {p.n_train_rows:,} rows ({', '.join(p.split['train_days'])}); "
              f"{n_params:,} parameters on {p.device}"
              + (f", {p.world.size} processes" if p.world.parallel else ""), file=sys.stderr)
    writing = RunDir.create(out) if p.world.is_main else contextlib.nullcontext(None)
    with writing as run:
        if run is not None:
            run.write_config(run_config(cfg, p, model))
            p.prep.save(run)
            if p.features.featurizer is not None:
                run.write_text_side(p.features.featurizer)
        history, val = train_loop(model, p, cfg)
        guard, val = content_guard(model, p, cfg, val)
        result, calibration = compute_metrics(model, p, cfg.model, cfg.eval_batch_size, run,
                                              calibration_method(cfg, p), val)
        if guard is not None:
            result["content_guard"] = guard
        if run is not None:
            run.write_calibration(calibration.to_dict())
            run.write_history(history)
            run.write_weights(model.state_dict())
            run.write_metrics(result)
            run.write_cold_start(M.cold_start_markdown(result))
    p.world.barrier()  # no rank returns before the run directory is in place
    if p.world.is_main:
        print(f"run written to {out}", file=sys.stderr)
        print(M.summary_text(result, "test"))
    return out


def fit(cfg: FitConfig) -> Path:
    if cfg.out and Path(cfg.out).exists():
        raise TrainerError(f"run directory {cfg.out} already exists; choose another --out")
    p = prepare(cfg)
    out = Path(p.world.broadcast(cfg.out or f"runs/{cfg.model}-{datetime.now():%Y%m%d-%H%M%S}"))
    if out.exists():
        raise TrainerError(f"run directory {out} already exists; choose another --out")
    model = (p.start if p.start is not None else build(cfg, p.spec)).to(p.device)
    return train_and_write(cfg, p, model, out)


# ---------------------------------------------------------------------------- evaluate a finished run


def evaluate(run_dir: Path, table_path: str | None = None) -> dict:
    """metrics.json of a finished run, computed again as `fit` computed it: on the table the run was
    fitted on, or on another with the same days."""
    run = load_run(run_dir)
    table = Table(table_path or run.cfg["table"], need_text=run.features.featurizer is not None)
    p = Prepared(table, run.cfg["split"], run.prep, run.features, run.cfg["spec"], run.device, run.cfg["threads"])
    result, _ = compute_metrics(run.model, p, run.cfg["model"], run.cfg["config"]["eval_batch_size"],
                                calibration=run.calibration)
    print(json.dumps(result, indent=2))
    print(M.summary_text(result, "test"), file=sys.stderr)
    return result
