"""Peers for the results tables, on the neural runs' table, split and metrics.

- `fit_lightgbm`: LightGBM (binary objective) on the dense block the neural runs read (every dense
  column of `training_samples`, log1p'd and standardised by the same `Preprocessor`) plus the
  scene as a categorical; with `text=True` also TF-IDF -> TruncatedSVD components (32 per side) of
  the user text and the item text (each side's text built by `embeddings.text`, as the featurizer
  builds it), fitted on the training days only. Early stopping looks at the
  validation days only. Ids are never features (a tree would split on arbitrary codes); what the
  table knows about an id reaches the model through its history columns.
- `oracle_metrics`: every validation / test row scored with the generator's true click
  probability (`truth.parquet`): the ceiling for any model on synthetic data.

Both read rows through the neural runs' `Preprocessor` (fitted on the training days: scene index,
cold-start buckets of training-day impression counts, hashed user ids for GAUC) and score them
with `trainer.metrics.evaluate`, so their numbers sit in the same table as the neural rungs'.

`python -m trainer ladder` runs them as the rungs "lightgbm", "lightgbm+text" and "oracle".
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embeddings.text import item_texts, user_texts
from embeddings.topics import N_COMPONENTS, TextComponents
from m2ctr.schema import DENSE_COLUMNS, TEXT_COLUMNS
from m2ctr.warehouse import schema_dir_of

from . import calibration as C
from . import metrics as M
from .artifacts import RunDir, warehouse_record
from .preprocessing import Preprocessor
from .table import EVAL_PARTS, REQUIRED_COLUMNS, SPLIT_PARTS, Table, TrainerError, as_numpy

# each side's text as the featurizer, the token vocabulary and the text components build it
SIDE_TEXTS = {"user": user_texts, "item": item_texts}
TRUTH_KEYS = ("user_id", "item_id", "log_ts")

# Moderate trees, early stopping does the rest; any key can be overridden through `params`.
LGB_PARAMS = {
    "objective": "binary",
    "metric": "auc",
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
MAX_ROUNDS = 2000
EARLY_STOPPING_ROUNDS = 50


# ---------------------------------------------------------------------------- reading


class UniqueTexts:
    """Each distinct text once, and one int32 code per row: memory grows with texts, not rows."""

    def __init__(self):
        self.texts: list[str] = []
        self._code: dict[str, int] = {}

    def add(self, values: pa.Array) -> np.ndarray:
        enc = pc.dictionary_encode(values)
        local = np.empty(len(enc.dictionary), np.int32)
        for k, t in enumerate(enc.dictionary.to_pylist()):
            code = self._code.get(t)
            if code is None:
                code = self._code[t] = len(self.texts)
                self.texts.append(t)
            local[k] = code
        return local[as_numpy(enc.indices, 0, np.int64)]


@dataclass
class Part:
    """One split's rows as the neural runs read them (`Preprocessor.transform`: the standardised
    dense block, the scene index, cold-start buckets, the GAUC user key), with per-side text codes."""

    arrays: dict[str, np.ndarray]
    text: dict[str, tuple[UniqueTexts, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.arrays["label"])


def fit_preprocessor(table: Table, split: dict) -> Preprocessor:
    """The neural runs' preprocessing, fitted on the training days with its defaults."""
    return Preprocessor.fit(table.batches(split["train_days"], REQUIRED_COLUMNS))


def read_part(table: Table, days: list[str], prep: Preprocessor, text: bool = False,
              dense: bool = True) -> Part:
    """The transformed rows of `days`, batch by batch; each side's text built as the featurizer
    builds it (`embeddings.text`), each distinct text kept once."""
    keep = (*M.ROW_KEYS, "dense") if dense else M.ROW_KEYS
    columns = [*REQUIRED_COLUMNS, *(TEXT_COLUMNS if text else ())]
    arrays: dict[str, list[np.ndarray]] = {k: [] for k in keep}
    uniques = {side: UniqueTexts() for side in SIDE_TEXTS} if text else {}
    codes = {side: [] for side in uniques}
    for batch in table.batches(days, columns):
        if batch.num_rows == 0:
            continue
        transformed = prep.transform(batch)
        for k in keep:
            arrays[k].append(transformed[k])
        for side, u in uniques.items():
            codes[side].append(u.add(pa.array(SIDE_TEXTS[side](batch), pa.string())))
    if not arrays["label"]:
        raise TrainerError(f"empty split: no rows on day(s) {', '.join(days)}")
    return Part({k: np.concatenate(v) for k, v in arrays.items()},
                {side: (u, np.concatenate(codes[side])) for side, u in uniques.items()})


# ---------------------------------------------------------------------------- text components


def fit_text(train: Part, seed: int) -> dict[str, TextComponents]:
    try:
        return {side: TextComponents(seed=seed).fit(uniq.texts) for side, (uniq, _) in train.text.items()}
    except ValueError as e:
        raise TrainerError(str(e)) from None


def text_features(part: Part, fitted: dict[str, TextComponents]) -> np.ndarray:
    """Per row, the components of its own distinct text (computed once per distinct text)."""
    return np.concatenate(
        [fitted[s].transform(u.texts)[codes] for s, (u, codes) in part.text.items()], axis=1
    )


# ---------------------------------------------------------------------------- LightGBM


def feature_names(text: bool) -> list[str]:
    names = [*DENSE_COLUMNS, "scene"]
    if text:
        names += [f"{side}_text_svd_{k}" for side in SIDE_TEXTS for k in range(N_COMPONENTS)]
    return names


def _features(part: Part, fitted) -> np.ndarray:
    blocks = [part.arrays["dense"], part.arrays["scene"].astype(np.float32)[:, None]]
    if fitted is not None:
        blocks.append(text_features(part, fitted))
    return np.concatenate(blocks, axis=1)


def _check_split(table: Table, split: dict) -> None:
    for part in SPLIT_PARTS:
        days = split.get(f"{part}_days")
        if not days:
            raise TrainerError(f"split has no {part}_days")
        missing = [d for d in days if d not in table.days]
        if missing:
            raise TrainerError(
                f"split {part}_days {missing} are not in the table (it has {', '.join(table.days)})"
            )


def _existing(out_dir: Path | None) -> dict | None:
    """An out_dir that already holds metrics.json is a finished run: read back, not retrained."""
    if out_dir is None:
        return None
    run = RunDir(out_dir)
    if run.is_finished():
        return run.metrics()
    if out_dir.exists():
        raise TrainerError(
            f"run directory {out_dir} exists without metrics.json; remove it or choose another"
        )
    return None


def fit_lightgbm(
    table_dir,
    split: dict,
    seed: int,
    text: bool = False,
    out_dir=None,
    threads: int | None = None,
    params: dict | None = None,
    calibration: str = "auto",
) -> dict:
    """Train LightGBM on the split's training days, stop early on its validation days, score val / test.

    Its probabilities go through the same per-scene calibration as a neural run's (trainer.calibration,
    fitted on the validation days), so both are scored as they would be served; per-scene
    calibration moves the overall AUC, not the AUC within a scene.

    Returns the metrics.json dict (model "lightgbm" or "lightgbm+text"). With `out_dir`, writes
    config.json, model.txt, metrics.json, cold_start.md (and the text components) into a hidden
    sibling first and renames it into place once complete; an out_dir that already holds
    metrics.json is read back instead (so a ladder resumes).
    """
    import lightgbm as lgb

    name = "lightgbm+text" if text else "lightgbm"
    out_dir = None if out_dir is None else Path(out_dir)
    done = _existing(out_dir)
    if done is not None:
        return done
    t0 = time.perf_counter()
    table = Table(table_dir, need_text=text)
    _check_split(table, split)
    prep = fit_preprocessor(table, split)
    parts = {p: read_part(table, split[f"{p}_days"], prep, text) for p in SPLIT_PARTS}
    fitted = fit_text(parts["train"], seed) if text else None
    names = feature_names(text)
    scene_col = names.index("scene")

    def dataset(part: str, reference=None):
        x = _features(parts[part], fitted)
        return lgb.Dataset(
            x,
            parts[part].arrays["label"],
            feature_name=names,
            categorical_feature=[scene_col],
            reference=reference,
            free_raw_data=True,
        )

    hp = {
        **LGB_PARAMS,
        "seed": seed,
        **({"num_threads": threads} if threads else {}),
        **(params or {}),
    }
    dtrain = dataset("train")
    dval = dataset("val", reference=dtrain)
    booster = lgb.train(
        hp,
        dtrain,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[dval],
        valid_names=["val"],
        callbacks=[
            lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)
        ],
    )
    best = booster.best_iteration or booster.current_iteration()
    result = {
        "model": name,
        "split": {f"{p}_days": list(split[f"{p}_days"]) for p in SPLIT_PARTS},
    }
    raw = {part: booster.predict(_features(parts[part], fitted), num_iteration=best).astype(np.float64)
           for part in EVAL_PARTS}
    val = parts["val"].arrays
    calibrator = C.fit(calibration, val["label"], raw["val"], val["scene"])
    train = parts["train"].arrays
    rates = M.click_rates(np.bincount(train["scene"], weights=train["label"], minlength=len(prep.scenes)),
                          np.bincount(train["scene"], minlength=len(prep.scenes)))
    for part in EVAL_PARTS:
        arrays, p = parts[part].arrays, calibrator(raw[part], parts[part].arrays["scene"])
        result[part] = M.evaluate(arrays, p, prep.scenes)
        result[part]["calibration"].update(
            method=calibrator.method, **M.calibration_effect(arrays, raw[part], p, prep.scenes, rates))
    config = {
        "model": name,
        "config": {"model": name, "table": str(table_dir), "seed": seed, "threads": threads, "text": text,
                   "calibration": calibration},
        "table": str(Path(table_dir).resolve()),
        "warehouse": warehouse_record(table_dir),
        "split": result["split"],
        "threads": threads,
        "params": hp,
        "max_rounds": MAX_ROUNDS,
        "early_stopping_rounds": EARLY_STOPPING_ROUNDS,
        "best_iteration": best,
        "best_val_auc": booster.best_score.get("val", {}).get("auc"),
        "features": names,
        "scenes": prep.scenes,
        "rows": {p: len(parts[p]) for p in SPLIT_PARTS},
        "seconds": round(time.perf_counter() - t0, 1),
        "lightgbm": lgb.__version__,
    }
    if out_dir is not None:
        with RunDir.create(out_dir) as run:
            run.write_config(config)
            run.write_peer_model(booster, best)
            run.write_calibration(calibrator.to_dict())
            for side, comp in (fitted or {}).items():
                run.write_peer_text_components(side, comp)
            run.write_metrics(result)
            run.write_cold_start(M.cold_start_markdown(result))
    return result


# ---------------------------------------------------------------------------- oracle


def find_truth(table_dir, truth=None) -> Path | None:
    """Where the generator's truth.parquet for `table_dir` is, or None.

    In this order: the `truth` argument (an error if it does not exist); `$CTR_RAW_PATH/truth.parquet`
    (beside the file when CTR_RAW_PATH names one CSV); for a table in the local layout
    `<root>/warehouse/<schema>.db/training_samples`, `<root>/raw/truth.parquet` (data/raw beside
    data/warehouse, the defaults of profiles.yml).
    """
    if truth is not None:
        path = Path(truth)
        if not path.is_file():
            raise TrainerError(f"truth file not found: {path}")
        return path
    candidates = []
    raw = os.environ.get("CTR_RAW_PATH")
    if raw:
        raw = Path(raw)
        candidates.append((raw.parent if raw.is_file() else raw) / "truth.parquet")
    schema_dir = schema_dir_of(table_dir)
    if schema_dir is not None:  # the warehouse's parent holds raw/ beside it
        candidates.append(schema_dir.parent.parent / "raw" / "truth.parquet")
    return next((c for c in candidates if c.is_file()), None)


def _keys_table(table: Table, days: list[str]) -> pa.Table:
    cols = [*TRUTH_KEYS, "label"]
    return pa.Table.from_batches([b.select(cols) for b in table.batches(days, cols) if b.num_rows])


def _normalise_keys(t: pa.Table) -> pa.Table:
    """Join keys in one type each: string ids, wall-clock timestamps in ms without a time zone."""
    ts = t.column("log_ts")
    if pa.types.is_timestamp(ts.type) and ts.type.tz is not None:
        ts = ts.cast(pa.timestamp(ts.type.unit))  # Spark's session time zone is UTC: UTC wall clock
    try:
        ts = ts.cast(pa.timestamp("ms"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise TrainerError(f"log_ts is not a timestamp ({ts.type}): {e}") from None
    return (
        t.set_column(t.schema.get_field_index("log_ts"), "log_ts", ts)
        .set_column(
            t.schema.get_field_index("user_id"), "user_id", t.column("user_id").cast(pa.string())
        )
        .set_column(
            t.schema.get_field_index("item_id"), "item_id", t.column("item_id").cast(pa.string())
        )
    )


def _truth_for(keys: pa.Table, truth_path: Path, days: list[str]) -> np.ndarray:
    """p_click of each row of `keys`, in its order; an error unless rows and truth match one to one."""
    try:
        truth = pq.read_table(truth_path, columns=[*TRUTH_KEYS, "label", "p_click", "date"])
    except (OSError, pa.ArrowInvalid, KeyError) as e:
        raise TrainerError(
            f"cannot read {truth_path} as the generator's truth.parquet: {e}"
        ) from None
    day = truth.column("date").cast(pa.string())  # date32 -> 'YYYY-MM-DD'
    truth = _normalise_keys(truth.filter(pc.is_in(day, value_set=pa.array(days, pa.string()))))
    keys = _normalise_keys(keys).append_column("_row", pa.array(np.arange(keys.num_rows)))
    truth = truth.select([*TRUTH_KEYS, "label", "p_click"]).rename_columns(
        [*TRUTH_KEYS, "truth_label", "p_click"]
    )
    joined = keys.join(truth, list(TRUTH_KEYS), join_type="left outer").sort_by("_row")
    where = f"{truth_path} does not match the table on {', '.join(days)}"
    if joined.num_rows != keys.num_rows:
        raise TrainerError(
            f"{where}: {joined.num_rows - keys.num_rows} row(s) match more than one truth row "
            "(truth must be unique on user_id, item_id, log_ts)"
        )
    p = joined.column("p_click")
    if p.null_count:
        first = joined.filter(pc.is_null(p)).slice(0, 1).to_pylist()[0]
        raise TrainerError(
            f"{where}: {p.null_count} of {keys.num_rows} row(s) have no truth row, e.g. "
            f"user {first['user_id']} item {first['item_id']} at {first['log_ts']}"
        )
    if truth.num_rows != keys.num_rows:
        raise TrainerError(f"{where}: {truth.num_rows} truth rows for {keys.num_rows} table rows")
    label, truth_label = (
        as_numpy(joined.column("label"), -1, np.int64),
        as_numpy(joined.column("truth_label"), -2, np.int64),
    )
    if (label != truth_label).any():
        raise TrainerError(f"{where}: labels differ on {int((label != truth_label).sum())} row(s)")
    return as_numpy(p, 0.0, np.float64)


def oracle_metrics(table_dir, split: dict, truth_path) -> dict:
    """The metrics.json dict of scoring every val / test row with its true click probability."""
    table = Table(table_dir)
    _check_split(table, split)
    prep = fit_preprocessor(table, split)
    result = {
        "model": "oracle",
        "split": {f"{p}_days": list(split[f"{p}_days"]) for p in SPLIT_PARTS},
    }
    for part in EVAL_PARTS:
        days = split[f"{part}_days"]
        rows = read_part(table, days, prep, dense=False)  # a clear error first if the days hold no rows
        p = _truth_for(_keys_table(table, days), Path(truth_path), days)
        result[part] = M.evaluate(rows.arrays, p, prep.scenes)
    return result
