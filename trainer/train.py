"""fit and evaluate: a run's metrics and its run directory.

`fit` is three steps: `prepare` and `build` (`trainer.prepare`: table, split, fitted preprocessing
and content side, the model), then `train_and_write` (the training loop of `trainer.loop`, the
metrics, the run directory). What a run directory holds, and how it is written whole or not at all,
is `trainer.artifacts.RunDir`'s; this module only says what goes in. Scoring rows, loading a
finished run back and `predict` are `trainer.scoring`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from . import calibration as C
from . import metrics as M
from .artifacts import RunDir, warehouse_record
from .config import FitConfig
from .loop import content_guard, score_days, train_loop
from .prepare import Prepared, build, prepare
from .scoring import load_run
from .table import EVAL_PARTS, Table, TrainerError

# ---------------------------------------------------------------------------- fit, step 3: train and write


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
        idx = p.prep.scene_positions(batch.column("scene").to_numpy())
        np.add.at(rows, idx, 1)
        np.add.at(clicks, idx, batch.column("label").to_numpy(zero_copy_only=False))
    return M.click_rates(clicks, rows)


def compute_metrics(model, p: Prepared, model_name: str, eval_batch_size: int, run: RunDir | None = None,
                    calibration: tuple[str, float | None] | C.Calibration = ("none", None),
                    val: dict | None = None) -> tuple[dict, C.Calibration]:
    """metrics.json for the validation and test days, and the calibration its probabilities went
    through: (method, Platt prior or None to choose one) fits one on the validation rows; a
    Calibration is applied as it is. The per-row scores, calibrated and raw, go to `run`. `val`: the
    validation days' scores, when the model at hand has scored them already."""
    result = {"model": model_name,
              "split": {**p.split, "rows": {"train": p.n_train_rows}}}
    parts = {}
    for part in EVAL_PARTS:
        parts[part] = rows = (val if part == "val" and val else
                              score_days(model, p, p.split[f"{part}_days"], eval_batch_size))
        if not rows:
            raise TrainerError(f"empty split: no rows on day(s) {', '.join(p.split[f'{part}_days'])}")
    if not isinstance(calibration, C.Calibration):
        method, prior = calibration
        val = parts["val"]
        calibration = C.fit(method, val["label"], val["probability"], val["scene"], prior)
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


def calibration_method(cfg: FitConfig, p: Prepared) -> tuple[str, float | None]:
    """The calibration a fit asks for, and the Platt prior to use (None: choose one). Under `auto` a
    refresh keeps its parent's method and prior (the choice is model selection, like the
    hyperparameters it keeps) and only refits the maps."""
    parent = p.parent.calibration if p.parent is not None else C.Calibration()
    if cfg.calibration == "auto" and parent.method != "none":
        return parent.method, parent.choice.get("platt_prior")
    return cfg.calibration, None


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
        history, val, moments = train_loop(model, p, cfg)
        guard, val = content_guard(model, p, cfg, val)
        result, calibration = compute_metrics(model, p, cfg.model, cfg.eval_batch_size, run,
                                              calibration_method(cfg, p), val)
        if guard is not None:
            result["content_guard"] = guard
        if run is not None:
            run.write_calibration(calibration.to_dict())
            run.write_history(history)
            run.write_weights(model.state_dict())
            run.write_optimizer(moments)
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
