"""One request -> a training_samples-shaped record batch -> the run's own scoring path.

The batch has exactly the columns `trainer predict` reads (`run.features.columns`): the ids, scene,
text fields and deep features as the request gives them, every history feature looked up in the
snapshot. It then goes through the same `Features` (preprocessing, text indices; new texts are
encoded through the run's featurizer and cache) and the same `score` as `predict`, so a request
and a table row with the same raw fields and the same history get the same probability.
"""

from __future__ import annotations

import operator
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from m2ctr.schema import (
    DEEP_FEATURES,
    DENSE_COLUMNS,
    ID_COLUMNS,
    ITEM_TEXT_COLUMNS,
    TEXT_COLUMNS,
    USER_TEXT_COLUMNS,
)
from trainer.scoring import Run, load_run, score, to_model

from .server import DEFAULT_MAX_TEXTS
from .snapshot import Snapshot

ITEM_FIELDS = ("item_id", "scene", *ITEM_TEXT_COLUMNS, *DEEP_FEATURES)
_item_fields = operator.attrgetter(*ITEM_FIELDS)


class ScoringError(ValueError):
    """A well-formed request this run cannot score (the service answers 422 with the message)."""


class Scorer:
    def __init__(self, run_dir: str | Path, snapshot: Snapshot, run: Run | None = None, onnx: Path | None = None,
                 max_texts: int = DEFAULT_MAX_TEXTS):
        self.run_dir = Path(run_dir)
        self.run = run or load_run(self.run_dir)
        # texts met while serving are kept for the next request, up to max_texts per side beyond
        # the run's own (least recently used dropped first), so a long-running service holds its memory
        self.max_texts = max_texts
        if self.run.features.featurizer is not None:
            self.run.features.featurizer.pin()
        # runtime "onnx": the exported graph scores (calibration inside it); else the torch model
        self.onnx = None
        if onnx is not None:
            from trainer.export import OnnxModel

            self.onnx = OnnxModel(onnx, threads=torch.get_num_threads())
        self.snapshot = snapshot
        self.columns = list(self.run.features.columns)
        self.scenes = set(self.run.prep.scenes)
        # The featurizer's text tables grow as new texts arrive and torch's threads are shared:
        # one request at a time.
        self.lock = threading.Lock()

    @property
    def runtime(self) -> str:
        return "torch" if self.onnx is None else "onnx"

    @property
    def model_name(self) -> str:
        return self.run.cfg["model"]

    def batch(self, user, items) -> pa.RecordBatch:
        """The training_samples row of each (user, item) pair, as of the snapshot's date."""
        n = len(items)
        fields = dict(zip(ITEM_FIELDS, zip(*map(_item_fields, items))))  # one tuple per field
        scenes = np.array(fields["scene"], dtype=np.int64)
        unknown = sorted(set(fields["scene"]) - self.scenes)
        if unknown:
            raise ScoringError(f"scene(s) {unknown} never appear on the training days of this run "
                               f"(it scores scenes {sorted(self.scenes)})")
        item_ids = np.array(fields["item_id"], dtype=object)
        values: dict[str, object] = self.snapshot.history(user.user_id, item_ids, scenes)
        values.update({
            "impression_id": pa.array([""] * n, pa.string()),  # not a model input
            "label": np.zeros(n, np.int32),                    # not a model input
            "user_id": pa.array([user.user_id] * n, pa.string()),
            "item_id": pa.array(item_ids, pa.string()),
            "scene": scenes.astype(np.int32),
        })
        deep = np.array([fields[c] for c in DEEP_FEATURES], dtype=np.float64)  # None -> NaN
        deep[np.isnan(deep)] = 0.0  # absent or null is 0.0, as staging makes an empty field
        values.update(zip(DEEP_FEATURES, deep))  # (the request model admits no NaN of its own)
        values.update({c: pa.array([getattr(user, c)] * n, pa.string()) for c in USER_TEXT_COLUMNS})
        values.update({c: pa.array(fields[c], pa.string()) for c in ITEM_TEXT_COLUMNS})
        return pa.RecordBatch.from_arrays([pa.array(values[c]) for c in self.columns], names=self.columns)

    def score(self, user, items) -> list[float]:
        """Click probability of each item for the user, in the items' order."""
        if not items:
            return []
        batch = self.batch(user, items)
        with self.lock:
            arrays = self.run.features(batch)
            if self.onnx is not None:
                p = self.onnx(to_model(arrays, self.run.features, self.run.device))
            else:
                rows = score(self.run.model, [arrays], self.run.features, self.run.device)
                p = self.run.calibration(rows["probability"], rows["scene"])
            if self.run.features.featurizer is not None:
                self.run.features.featurizer.trim(self.max_texts)
        if not np.isfinite(p).all():  # JSON would carry it as null: say so instead
            bad = np.flatnonzero(~np.isfinite(p))[:5].tolist()
            raise RuntimeError(f"non-finite score for item(s) at {bad}: check the snapshot and the run")
        return p.tolist()

    def content_tables(self) -> dict | None:
        """Size, bound and hit rate of the text tables, per side (None: the run reads no text)."""
        featurizer = self.run.features.featurizer
        if featurizer is None:
            return None
        with self.lock:
            return {"max_added_texts": self.max_texts, **featurizer.table_stats()}

    def inputs(self) -> dict:
        """What the model reads, for GET /metadata."""
        featurizer = self.run.features.featurizer
        return {
            "ids": list(ID_COLUMNS),
            "scenes": sorted(self.scenes),
            "dense": list(DENSE_COLUMNS),
            "text": list(TEXT_COLUMNS) if featurizer is not None else [],
            "content": featurizer.cfg.__dict__ if featurizer is not None else None,
        }
