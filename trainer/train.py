"""fit / evaluate / predict: the training loop, the run directory and its artifacts.

A run directory holds config.json (every CLI argument, hyperparameters, input
spec, split), model.safetensors, the fitted preprocessing as JSON (and the text
featurizer's own files when the run uses text), metrics.json and
cold_start.md. It is written under a hidden temporary name next to its final
place and renamed only once complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from . import metrics as M
from .data import (
    REQUIRED_COLUMNS,
    TEXT_COLUMNS,
    Preprocessor,
    Table,
    TrainerError,
    load_split,
    split_days,
)
from .models import get_model

# Arrays the model sees; the raw user_id strings (for GAUC) stay on the numpy side.
BASE_KEYS = ("ids", "dense", "scene", "label", "cold_user", "cold_item")
TEXT_BLOCKS = ("text_user", "text_item")
FALLBACK_BLOCKS = ("fb_user", "fb_item")


# ---------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainerError("--device cuda: no CUDA device is available")
    return torch.device(name)


def split_output(out):
    """Models return logits, or (logits, extras) with a dict of per-row tensors."""
    return out if isinstance(out, tuple) else (out, {})


def own_scene_logit(logits: torch.Tensor, scene: torch.Tensor) -> torch.Tensor:
    """Each row's logit from its own scene's tower; a single-column output serves every scene."""
    if logits.dim() == 1 or logits.shape[1] == 1:
        return logits.reshape(-1)
    return logits.gather(1, scene.unsqueeze(1)).squeeze(1)


def masked_bce(logits, scene, label, scene_weights: torch.Tensor | None = None) -> torch.Tensor:
    """BCE on each row's own-scene logit only, so other scenes' towers get no gradient from it."""
    weight = None if scene_weights is None else scene_weights[scene]
    return F.binary_cross_entropy_with_logits(own_scene_logit(logits, scene), label, weight=weight)


def fit_scene_weights(scene: np.ndarray, n_scenes: int) -> list[float]:
    """Inverse-frequency weights, scaled so the mean weight over training rows is 1."""
    counts = np.bincount(scene, minlength=n_scenes).astype(np.float64)
    w = np.where(counts > 0, len(scene) / (n_scenes * np.maximum(counts, 1)), 0.0)
    return (w / (w[scene].mean())).tolist()


def model_keys(arrays: dict, blocks: list[str]) -> list[str]:
    return [k for k in (*BASE_KEYS, *blocks) if k in arrays]


@torch.inference_mode()  # no autograd bookkeeping at all, not just no gradients
def predict_arrays(model, arrays: dict, keys: list[str], device, batch_size: int):
    """Own-scene click probabilities (float64) for every row, plus any per-row extras."""
    model.eval()
    n = len(arrays["label"])
    probs, extras = [], {}
    for start in range(0, n, batch_size):
        batch = {k: torch.from_numpy(arrays[k][start : start + batch_size]).to(device) for k in keys}
        logits, extra = split_output(model(batch))
        probs.append(torch.sigmoid(own_scene_logit(logits, batch["scene"])).double().cpu().numpy())
        for k, v in extra.items():
            extras.setdefault(k, []).append(v.detach().double().cpu().numpy())
    return np.concatenate(probs), {k: np.concatenate(v) for k, v in extras.items()}


@contextlib.contextmanager
def staging_dir(final: Path):
    """Yield a hidden sibling directory; rename it to `final` only if the block completes."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.rename(tmp, final)


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


# ---------------------------------------------------------------------------- training


class Optimizers:
    """Lazy Adam on the id embedding tables, AdamW (fused kernel on CPU) on every other weight.

    A batch touches about a thousand of the tables' rows, yet a dense embedding gradient makes
    AdamW read and write every row of the table (and its two moment buffers) each step, the
    largest cost of a step after the expert matmuls. With `sparse=True` the gradient holds only
    the batch's rows and SparseAdam updates just those rows and their moments (no weight decay
    on embeddings, as is usual for id tables).
    """

    def __init__(self, model: torch.nn.Module, lr: float, weight_decay: float):
        tables = []
        for m in model.modules():
            if isinstance(m, torch.nn.Embedding) and m.max_norm is None:
                m.sparse = True
                tables.append(m.weight)
        in_tables = {id(p) for p in tables}
        rest = [p for p in model.parameters() if id(p) not in in_tables]
        fused = all(p.device.type in ("cpu", "cuda") for p in rest)
        self.opts = [torch.optim.AdamW(rest, lr=lr, weight_decay=weight_decay, fused=fused or None)]
        if tables:
            self.opts.append(torch.optim.SparseAdam(tables, lr=lr))

    def zero_grad(self) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=True)

    def step(self) -> None:
        for o in self.opts:
            o.step()


def train_loop(model, train: dict, val: dict, keys: list[str], cfg: dict, device) -> list[dict]:
    """SparseAdam + AdamW (`Optimizers`), early stopping on validation AUC; the best epoch's weights are restored."""
    opt = Optimizers(model, cfg["lr"], cfg["weight_decay"])
    sw = cfg.get("scene_weight_values")
    sw = None if sw is None else torch.tensor(sw, dtype=torch.float32, device=device)
    tensors = {k: torch.from_numpy(train[k]) for k in keys}
    n, bs = len(train["label"]), cfg["batch_size"]
    gen = torch.Generator().manual_seed(cfg["seed"])
    # "bfloat16": forward matmuls under autocast (about half the step time on CPUs with
    # avx512_bf16, see bench/trainer.py --ours-bf16); weights, optimiser and evaluation stay float32
    amp = cfg.get("precision", "float32") == "bfloat16"
    best_auc, best_state, best_epoch, history = float("-inf"), None, -1, []
    for epoch in range(cfg["epochs"]):
        model.train()
        # shuffle the whole training set once per epoch, then every batch is a contiguous slice
        # (a view): no per-step gather or allocation for the inputs
        perm = torch.randperm(n, generator=gen)
        shuffled = {k: v[perm].to(device) for k, v in tensors.items()}
        bar = tqdm(
            range(0, n, bs), desc=f"epoch {epoch + 1}/{cfg['epochs']}", unit="batch",
            file=sys.stderr, mininterval=1.0, disable=cfg.get("quiet", False),
        )
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        for step, start in enumerate(bar):
            batch = {k: v[start : start + bs] for k, v in shuffled.items()}
            rows = len(batch["label"])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits, _ = split_output(model(batch))
            loss = masked_bce(logits.float(), batch["scene"], batch["label"], sw)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += rows
            loss_sum += loss.item() * rows
            if step % 20 == 0:
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", samples_s=f"{rate:,.0f}", refresh=False)
        bar.close()
        elapsed = time.perf_counter() - t0
        p_val, _ = predict_arrays(model, val, keys, device, cfg["eval_batch_size"])
        val_auc = M.auc(val["label"], p_val)
        score = -1.0 if val_auc is None else val_auc
        improved = score > best_auc
        history.append(
            {"epoch": epoch + 1, "train_loss": loss_sum / seen, "val_auc": val_auc,
             "samples_per_s": seen / elapsed}
        )
        if not cfg.get("quiet", False):
            print(
                f"epoch {epoch + 1}: train loss {loss_sum / seen:.4f}  val AUC "
                f"{M.fmt(val_auc)}  {seen / elapsed:,.0f} samples/s{'  *' if improved else ''}",
                file=sys.stderr,
            )
        if improved:
            best_auc, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= cfg["patience"]:
            break
    model.load_state_dict(best_state)
    return history


def fit(args) -> Path:
    Model = get_model(args.model)
    text_on = bool(args.text or Model.uses_text)
    fallback_on = bool(args.fallback or Model.uses_text)
    blocks = [*(TEXT_BLOCKS if text_on else ()), *(FALLBACK_BLOCKS if fallback_on else ())]
    if fallback_on and not text_on:
        raise TrainerError("--fallback needs --text (or a model that uses text)")
    out = Path(args.out) if args.out else Path("runs") / f"{args.model}-{datetime.now():%Y%m%d-%H%M%S}"
    if out.exists():
        raise TrainerError(f"run directory {out} already exists; choose another --out")

    seed_everything(args.seed)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    device = resolve_device(args.device)
    table = Table(args.table, need_text=text_on)
    split = split_days(table.days, args.val_days, args.test_days)

    prep = Preprocessor.fit(
        table.batches(split["train_days"], REQUIRED_COLUMNS),
        min_count=args.min_count, max_vocab=args.max_vocab, hash_buckets=args.hash_buckets,
    )
    featurizer, text_cfg = None, None
    if text_on:
        from embeddings import TextFeaturizer

        text_cfg = {
            "text_model": args.text_model, "pooling": args.pooling, "whiten_dim": args.whiten_dim,
            "sentence_model": args.sentence_model, "cache_dir": args.cache_dir,
            "fallback": fallback_on,
        }
        featurizer = TextFeaturizer(text_cfg)
        featurizer.fit(
            table.batches(split["train_days"], ["user_id", "item_id", *TEXT_COLUMNS]),
            user_train_counts=prep.train_counts["user_id"],
            item_train_counts=prep.train_counts["item_id"],
        )
    data = {
        part: load_split(table, split[f"{part}_days"], prep, featurizer, blocks)
        for part in ("train", "val", "test")
    }
    spec = {
        "n_dense": prep.n_dense,
        "id_fields": ["user_id", "item_id"],
        "id_cardinalities": prep.id_cardinalities,
        "n_scenes": len(prep.scenes),
        "scenes": prep.scenes,
        "blocks": {b: int(data["train"][b].shape[1]) for b in blocks},
    }
    try:
        model = Model(spec, **args.hp).to(device)
    except (TypeError, ValueError) as e:
        raise TrainerError(f"cannot build {args.model}: {e}") from None
    cfg = {
        "model": args.model,
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "hparams": getattr(model, "hparams", dict(args.hp)),
        "spec": spec,
        "text": text_on,
        "fallback": fallback_on,
        "blocks": blocks,
        "text_cfg": text_cfg,
        "split": split,
        "table": str(Path(args.table).resolve()),
        "seed": args.seed,
        "epochs": args.epochs,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "eval_batch_size": args.eval_batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "threads": threads,
        "precision": getattr(args, "precision", "float32"),
        "device": str(device),
        "scene_weights": args.scene_weights,
        "scene_weight_values": (
            fit_scene_weights(data["train"]["scene"], spec["n_scenes"])
            if args.scene_weights == "balanced" else None
        ),
        "quiet": args.quiet,
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "pyarrow": pa.__version__},
    }
    keys = model_keys(data["train"], blocks)
    print(
        f"{args.model}: train {len(data['train']['label']):,} rows ({', '.join(split['train_days'])}), "
        f"val {len(data['val']['label']):,}, test {len(data['test']['label']):,}; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters on {device}",
        file=sys.stderr,
    )
    with staging_dir(out) as tmp:
        write_json(tmp / "config.json", cfg)
        prep.save(tmp)
        if featurizer is not None:
            featurizer.save(tmp)
        history = train_loop(model, data["train"], data["val"], keys, cfg, device)
        write_json(tmp / "history.json", history)
        save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        result = compute_metrics(model, data, keys, cfg, device)
        write_json(tmp / "metrics.json", result)
        (tmp / "cold_start.md").write_text(M.cold_start_markdown(result))
    print(f"run written to {out}", file=sys.stderr)
    print(M.summary_text(result, "test"))
    return out


def compute_metrics(model, data: dict, keys: list[str], cfg: dict, device) -> dict:
    result = {"model": cfg["model"], "split": cfg["split"]}
    extras_summary = {}
    for part in ("val", "test"):
        p, extras = predict_arrays(model, data[part], keys, device, cfg["eval_batch_size"])
        result[part] = M.evaluate(data[part], p, cfg["spec"]["scenes"])
        if extras:
            extras_summary[part] = M.summarise_extras(data[part], extras, cfg["spec"]["scenes"])
    if extras_summary:
        result["extras"] = extras_summary
    return result


# ---------------------------------------------------------------------------- loading a run


def load_run(run_dir: Path, device_name: str | None = None):
    """(config, preprocessing, featurizer or None, model with the saved weights, device)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not (run_dir / "model.safetensors").is_file():
        raise TrainerError(f"{run_dir} is not a complete run directory (config.json, model.safetensors)")
    cfg = json.loads((run_dir / "config.json").read_text())
    torch.set_num_threads(cfg["threads"])  # same thread count, same floating-point sums
    device = resolve_device(device_name or ("cuda" if cfg["device"].startswith("cuda") and torch.cuda.is_available() else "cpu"))
    prep = Preprocessor.load(run_dir)
    featurizer = None
    if cfg["text"]:
        from embeddings import TextFeaturizer

        featurizer = TextFeaturizer.load(run_dir)
    model = get_model(cfg["model"])(cfg["spec"], **cfg["hparams"])
    model.load_state_dict(load_file(run_dir / "model.safetensors"))
    return cfg, prep, featurizer, model.to(device), device


def evaluate(args) -> dict:
    cfg, prep, featurizer, model, device = load_run(args.run_dir)
    table = Table(args.table or cfg["table"], need_text=cfg["text"])
    data = {
        part: load_split(table, cfg["split"][f"{part}_days"], prep, featurizer, cfg["blocks"])
        for part in ("val", "test")
    }
    result = compute_metrics(model, data, model_keys(data["test"], cfg["blocks"]), cfg, device)
    print(json.dumps(result, indent=2))
    print(M.summary_text(result, "test"), file=sys.stderr)
    return result


def predict(args) -> Path:
    cfg, prep, featurizer, model, device = load_run(args.run_dir)
    table = Table(args.table, need_text=cfg["text"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    columns = [*REQUIRED_COLUMNS, *(TEXT_COLUMNS if featurizer is not None else ())]
    schema = pa.schema([("impression_id", pa.string()), ("probability", pa.float64())])
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    n = 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for batch in tqdm(table.batches(table.days, columns), desc="predict", unit="batch", file=sys.stderr):
                if batch.num_rows == 0:
                    continue
                arrays = prep.transform(batch)
                if featurizer is not None:
                    text = featurizer.transform(batch)
                    arrays.update({k: np.asarray(text[k], np.float32) for k in cfg["blocks"]})
                p, _ = predict_arrays(model, arrays, model_keys(arrays, cfg["blocks"]), device, cfg["eval_batch_size"])
                writer.write_table(pa.table({"impression_id": batch.column("impression_id").cast(pa.string()), "probability": p}, schema=schema))
                n += batch.num_rows
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    print(f"{n:,} predictions written to {out}", file=sys.stderr)
    return out
