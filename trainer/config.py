"""FitConfig: everything one `fit` needs, in one object.

The CLI builds it from its arguments and the ladder derives each rung from a base with
`dataclasses.replace`; nothing below the CLI sees argparse. `config.json` of a run is this object,
written once. Defaults live here only: the CLI shows them in `--help`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from embeddings.options import TextConfig
from m2ctr.warehouse import TRAINING_SAMPLES, table_path


def default_table_path() -> Path:
    return table_path(TRAINING_SAMPLES)


# Epochs and learning rate left unset: a full fit's, or a daily refresh's. A refresh fine-tunes: one
# pass over the new days and the replayed ones, at the rate a full fit's second epoch runs at. Chosen
# with `replay_days` on the validation days of bench/refresh.py (mmoe, 3 seeds): more epochs or a
# higher rate overfit the few days, a lower rate or no replay lag behind.
FULL_FIT = {"epochs": 5, "lr": 2e-3}
REFRESH = {"epochs": 1, "lr": 1e-3}
# the earlier rows a refresh replays: the last days, or as many rows drawn from every earlier day
REPLAYS = ("recent", "spread")


@dataclass(frozen=True)
class FitConfig:
    model: str
    table: str = field(default_factory=lambda: str(default_table_path()))
    out: str | None = None
    # -- optimisation
    epochs: int | None = None  # FULL_FIT's, or REFRESH's with init_from
    patience: int = 2
    seed: int = 42
    batch_size: int = 1024
    eval_batch_size: int = 8192
    lr: float | None = None
    emb_lr: float = 5e-4
    token_lr: float = 2e-3
    lr_decay: float = 0.5
    weight_decay: float = 1e-5
    precision: str = "float32"
    scene_weights: str = "none"
    # per-scene calibration fitted on the validation days (trainer/calibration.py)
    calibration: str = "auto"
    # -- daily refresh: start from an earlier run (its weights, vocabularies, preprocessing and
    # content tables) and train on the days after its training days plus `replay_days` of them
    init_from: str | None = None
    # the new days are read `new_passes` times per epoch, the replayed days once: on bench/refresh.py
    # (3 seeds), the new days twice beside 1 replayed day scored higher on validation than once
    # beside 2, in about the same rows and time: fusion by 0.0015-0.0024 on every seed, mmoe by 0.0013
    new_passes: int = 2
    replay_days: int = 1
    # which earlier rows: "recent", the last `replay_days` days; "spread", as many rows as
    # `replay_days` days hold, drawn evenly from every earlier training day of the table
    replay: str = "recent"
    # at each epoch's end a refresh's weights move back this share of the way to its parent's (which
    # were themselves blended so, in a chain of daily refreshes): trained on a few recent days, a
    # refresh drifts from what the earlier days taught, and the blend keeps part of it. On
    # bench/refresh.py's validation days (3 seeds x 4 days), 0.3 against none: fusion -0.0007 against
    # -0.0015 behind a full fit, mmoe -0.0009 against -0.0022; 0.2 / 0.4 / 0.5 gave fusion -0.0008 /
    # -0.0010 / -0.0015
    keep_parent: float = 0.3
    # -- hardware
    device: str = "auto"
    threads: int | None = None
    # -- split and preprocessing (fitted on the training days only)
    val_days: int = 1
    test_days: int = 1
    min_count: int = 2
    max_vocab: int = 200_000
    hash_buckets: int = 4096
    shuffle_buffer: int = 262_144
    # -- cold-start simulation on training batches (trainer.coldstart); None: the model's default
    cold_user: float | None = None
    cold_item: float | None = None
    cold_mask_history: float | None = None  # share of simulated rows with hidden history
    # -- content: token ids, text components, encoder vectors, fallback vectors (embeddings/options.py);
    # no part unless asked for, every part for a model that uses text
    content: TextConfig = field(default_factory=TextConfig.asked_for)
    # -- model hyperparameters (`--hp KEY=VALUE`), checked by the model itself
    hp: dict = field(default_factory=dict)
    # -- output
    quiet: bool = False
    report: bool = False

    def __post_init__(self):
        for name, value in (REFRESH if self.init_from else FULL_FIT).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

    def replace(self, **changes) -> FitConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def with_content(self, **changes) -> FitConfig:
        """A copy with some content options changed (by field name, e.g. tokens=True)."""
        return self.replace(content=self.content.replace(**changes))

    @classmethod
    def from_dict(cls, values: dict) -> FitConfig:
        """The FitConfig of a run's config.json; runs written before the content options were
        nested keep them at the top level (`text` was the vectors switch)."""
        names = {f.name for f in dataclasses.fields(cls)}
        content = values.get("content")
        if not isinstance(content, dict):
            flat = {("vectors" if k == "text" else k): v for k, v in values.items()}
            content = {f.name: flat[f.name] for f in dataclasses.fields(TextConfig) if f.name in flat}
        kept = {k: v for k, v in values.items() if k in names and k != "content"}
        return cls(**kept, content=TextConfig.asked_for().replace(**content))


def default(name: str):
    """The default of one FitConfig field (for the CLI's `--help`); of a content option, its default
    in a FitConfig's `content`."""
    f = next((f for f in dataclasses.fields(FitConfig) if f.name == name), None)
    if f is None:
        return getattr(TextConfig.asked_for(), name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
