"""Scoring rows with a model, and a finished run loaded back to score with.

`score` is the one forward pass: `fit` scores its validation and test days with it, `predict`
scores a table with a loaded run, and serving and the ONNX export feed it (or its graph) the same
arrays `to_model` makes. `load_run` reads back what `trainer.artifacts.RunDir` wrote.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from m2ctr.atomic import atomic_path

from . import calibration as C
from .artifacts import RunDir
from .batches import Features
from .metrics import ROW_KEYS
from .models import MODELS
from .preprocessing import Preprocessor
from .table import Table, TrainerError

# Per-row arrays that stay on the numpy side: the metrics group by them, the model never sees them.
HOST_ONLY = ("user_key",)


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


def to_model(arrays: dict, features: Features, device) -> dict:
    """A numpy batch as the model's tensors on `device`, text indices replaced by their blocks."""
    batch = {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in arrays.items() if k not in HOST_ONLY}
    if features.featurizer is not None:
        batch = features.featurizer.gather(batch, device)
    return batch


@torch.inference_mode()  # no autograd bookkeeping at all, not just no gradients
def score(model, batches, features: Features, device) -> dict[str, np.ndarray]:
    """Own-scene click probabilities (float64) of every row, with what the metrics need of it."""
    if model.training:  # eval() walks every module: a service would pay it on every request
        model.eval()
    out: dict[str, list[np.ndarray]] = {}
    for arrays in batches:
        batch = to_model(arrays, features, device)
        logits, extras = split_output(model(batch))
        out.setdefault("probability", []).append(
            torch.sigmoid(own_scene_logit(logits, batch["scene"])).double().cpu().numpy())
        for k in ROW_KEYS:
            out.setdefault(k, []).append(arrays[k])
        for k, v in extras.items():
            out.setdefault(k, []).append(v.detach().double().cpu().numpy())
    if not out:
        return {}
    return {k: np.concatenate(v) for k, v in out.items()}


# ---------------------------------------------------------------------------- a finished run


@dataclass
class Run:
    """A finished run loaded back: its config, fitted preprocessing, content side and model."""

    cfg: dict
    prep: Preprocessor
    features: Features
    model: torch.nn.Module
    device: torch.device
    calibration: C.Calibration = field(default_factory=C.Calibration)


def load_run(run_dir: Path, device_name: str | None = None, **text_overrides) -> Run:
    """A run as it was written; `text_overrides` change content options that do not change what
    was fitted (e.g. `cache_dir`)."""
    rd = RunDir(run_dir)
    if not rd.file(rd.CONFIG).is_file() or not rd.has_weights():
        raise TrainerError(f"{run_dir} is not a complete run directory ({rd.CONFIG}, {rd.WEIGHTS})")
    cfg = rd.config()
    if "spec" not in cfg:
        raise TrainerError(f"{run_dir} is a {cfg['model']} run, not a neural one: it has no model input spec")
    torch.set_num_threads(cfg["threads"])  # same thread count, same floating-point sums
    saved_on_cuda = cfg["device"].startswith("cuda") and torch.cuda.is_available()
    device = resolve_device(device_name or ("cuda" if saved_on_cuda else "cpu"))
    prep = Preprocessor.load(rd)
    featurizer = None
    if cfg.get("content") is not None:
        from embeddings import TextFeaturizer

        featurizer = TextFeaturizer.load(rd.text_side(), **text_overrides)
    model = MODELS[cfg["model"]](cfg["spec"], **cfg["hparams"])
    model.load_state_dict(rd.weights())
    return Run(cfg, prep, Features(prep, featurizer), model.to(device), device, C.Calibration.of_run(rd))


def predict(run_dir: Path, table_path: str, out: Path) -> Path:
    """Every row of a table scored by a finished run: impression_id and calibrated probability."""
    run = load_run(run_dir)
    table = Table(table_path, need_text=run.features.featurizer is not None)
    out = Path(out)
    schema = pa.schema([("impression_id", pa.string()), ("probability", pa.float64())])
    n = 0
    columns = [*run.features.columns]
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch in tqdm(table.batches(table.days, columns, run.cfg["config"]["eval_batch_size"]),
                          desc="predict", unit="batch", file=sys.stderr):
            rows = score(run.model, [run.features(batch)], run.features, run.device)
            writer.write_table(pa.table({"impression_id": batch.column("impression_id").cast(pa.string()),
                                         "probability": run.calibration(rows["probability"], rows["scene"])},
                                        schema=schema))
            n += batch.num_rows
    print(f"{n:,} predictions written to {out}", file=sys.stderr)
    return out
