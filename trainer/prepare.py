"""Set up a fit: the table, the day split, the fitted preprocessing and content side, the model.

`prepare` reads the table and fits on its training days everything the model's input needs (a
daily refresh, `prepare_refresh`, continues an earlier run instead, its id tables grown); `build`
makes the model from the input spec. `Prepared` is what the training loop (`trainer.loop`) and the
run's metrics (`trainer.train`) read.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from embeddings.options import TextConfig
from m2ctr.schema import ID_COLUMNS

from . import distributed
from .artifacts import RunDir
from .batches import Features
from .coldstart import ColdStartSimulation
from .config import REPLAYS, FitConfig
from .models import MODELS
from .models.layers import Inputs, check_hyperparameters
from .preprocessing import Preprocessor
from .scoring import Run, load_run, resolve_device
from .table import (
    REQUIRED_COLUMNS,
    TEXT_FIT_COLUMNS,
    Table,
    TrainerError,
    history_bucket,
    split_days,
)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    # its training rows per epoch, a day read in part counting its share (the preprocessing counts the
    # earlier run's)
    refresh_rows: int | None = None
    day_shares: dict[str, float] = field(default_factory=dict)  # days read in part (share of rows) or repeatedly
    moments: dict = field(default_factory=dict)  # a refresh's optimiser state: the parent's, grown as its tables

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
    training days after its own (each read `new_passes` times per epoch) plus its last
    `replay_days` training days.

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
    if cfg.new_passes < 1:
        raise TrainerError("--new-passes must be 1 or more")
    if not 0 <= cfg.keep_parent < 1:
        raise TrainerError(f"--keep-parent must be at least 0 and below 1, not {cfg.keep_parent:g}")
    before = parent.cfg["split"]["train_days"]
    new = [d for d in split["train_days"] if d > before[-1]]
    if not new:
        raise TrainerError(f"nothing to refresh on: the table's training days end on {split['train_days'][-1]}, "
                           f"and {cfg.init_from} was trained up to {before[-1]}")
    shares = {}
    if cfg.replay == "recent":
        replay = [d for d in before if d in split["train_days"]][-cfg.replay_days:] if cfg.replay_days else []
    elif cfg.replay == "spread":
        # the rows of `replay_days` days, drawn evenly from every earlier day: the refresh sees the
        # mix of days a full fit sees, not only the last ones
        earlier = [d for d in split["train_days"] if d <= before[-1]]
        replay = earlier if cfg.replay_days else []
        shares = {d: min(1.0, cfg.replay_days / len(earlier)) for d in replay}
    else:
        raise TrainerError(f"--replay must be one of {', '.join(REPLAYS)}, not {cfg.replay!r}")
    split = {**split, "train_days": replay + new}
    shares.update({d: cfg.new_passes for d in new})
    prep = parent.prep.extend(table.batches(new, ID_COLUMNS), parent.cfg["config"]["max_vocab"])
    spec = {**parent.cfg["spec"], "id_cardinalities": prep.id_cardinalities}
    model = MODELS[cfg.model](spec, **parent.cfg["hparams"])
    rows_before = prep.id_rows_before(parent.prep)
    model.load_state_dict(grown_state(parent.model, parent.model.state_dict(), rows_before))
    # the moments of an id row follow it, as its weights do
    moments = grown_state(parent.model, RunDir(cfg.init_from).optimizer(), rows_before)
    rows = table.count_rows(table.fragments(split["train_days"]), shares)
    return Prepared(table, split, prep, Features(prep, parent.features.featurizer), spec, device, threads, world,
                    simulation, parent, model, rows, shares, moments)


def grown_state(model: torch.nn.Module, state: dict, rows_before: np.ndarray) -> dict:
    """`state` (`model`'s weights, or its optimiser's moments keyed by weight name) with every id
    table's rows (an `Inputs` embedding) re-indexed: row i of the new table is row `rows_before[i]`
    of the old one."""
    state = dict(state)
    take = torch.from_numpy(rows_before)
    tables = [f"{name}.embedding.weight" if name else "embedding.weight"
              for name, module in model.named_modules() if isinstance(module, Inputs)]
    for key, value in state.items():
        if any(key == t or key.startswith(t + ".") for t in tables) and value.dim() > 0:
            state[key] = value[take.to(value.device)]
    return state


# ---------------------------------------------------------------------------- fit, step 2: build


def build(cfg: FitConfig, spec: dict) -> torch.nn.Module:
    try:
        check_hyperparameters(MODELS[cfg.model], cfg.model, cfg.hp)
        return MODELS[cfg.model](spec, **cfg.hp)
    except (TypeError, ValueError) as e:
        raise TrainerError(f"cannot build {cfg.model}: {e}") from None

