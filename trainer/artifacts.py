"""The run directory and how anything in it is written: `RunDir` alone reads and writes a run.

A run directory (neural or a peer's) holds:

    config.json          what the run was (one schema for every run, see `RunDir.config`)
    model.safetensors    the weights of a neural run; model.txt of a LightGBM one
    optimizer.safetensors  a neural run's Adam moments after its best epoch (a refresh starts from them)
    preprocessing.json   the fitted preprocessing (with vocab_* / train_counts_* Parquet beside it)
    text/                the content side, when the run uses text (its files: embeddings.persist);
                         text_svd_{user,item}.* the text components of a LightGBM peer with text
    calibration.json     the per-scene calibration fitted on the validation days
    metrics.json         validation and test metrics
    history.json         one entry per epoch
    scores_val.parquet, scores_test.parquet   the per-row scores the report draws
    cold_start.md        the cold-start table as Markdown

A run is written under a hidden sibling name and renamed into place only once complete
(`RunDir.create`), so a reader never sees half of one; each file is written whole too. An export
of a run (`trainer export`) is a directory of its own, `ExportDir`.

`config.json` (format 2): `model`, `config` (the options the run was started with: for a neural
run the FitConfig, for a peer its seed, table, threads and text switch), `split`, `table`,
`warehouse` (the warehouse the table came from and its data-quality result, or None), `threads`,
`device`, plus what each kind of run adds (`spec`, `hparams`, `content`; `params`,
`best_iteration`, ...). Runs written before the format was numbered are read into it: their
top-level `seed` / `epochs` / `args` move under `config`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from m2ctr.atomic import atomic_path, write_text_atomic
from m2ctr.warehouse import data_quality_path, schema_dir_of

from .table import EVAL_PARTS, TrainerError

CONFIG_FORMAT = 2


class RunError(TrainerError):
    """A run directory that cannot be read: a one-line message saying what to do."""


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: Path, obj, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunError(f"cannot read {what} {path}: {e}") from None


# ---------------------------------------------------------------------------- the warehouse a run read


def warehouse_record(table: str | os.PathLike) -> dict:
    """Where a table lives and the data-quality result of its warehouse, as a run records them.

    A table in the warehouse's layout sits at `<warehouse>/<schema>.db/<model>`; the validation of
    that schema leaves its result beside it (`m2ctr.warehouse`). A table elsewhere has no such result.
    """
    schema_dir = schema_dir_of(table)
    record = {"table": str(Path(table).resolve()), "schema_dir": None, "data_quality": None}
    if schema_dir is not None:
        record["schema_dir"] = str(schema_dir)
        dq = data_quality_path(schema_dir)
        if dq.is_file():
            try:
                result = json.loads(dq.read_text())
            except (OSError, json.JSONDecodeError):
                result = None
            if isinstance(result, dict):
                record["data_quality"] = {"file": str(dq), **result}
    return record


# ---------------------------------------------------------------------------- the run directory


def normalise_config(doc: dict) -> dict:
    """config.json of any release in the current format (a copy; the file is left as it is)."""
    if not isinstance(doc, dict) or "model" not in doc:
        raise RunError("config.json has no model: not a run of this project")
    doc = dict(doc)
    if doc.get("format", 1) > CONFIG_FORMAT:
        raise RunError(f"config.json is format {doc['format']}, newer than this trainer reads "
                       f"({CONFIG_FORMAT}); upgrade m2ctr to read it")
    options = dict(doc.get("config") or doc.get("args") or {})
    for key in ("seed", "epochs", "table", "threads"):  # a peer's, or an old run's, top-level keys
        if key in doc and key not in options:
            options[key] = doc[key]
    options.setdefault("model", doc["model"])
    doc["config"] = options
    doc.setdefault("table", options.get("table"))
    doc.setdefault("warehouse", None)
    doc["format"] = CONFIG_FORMAT
    return doc


class Directory:
    """A directory that is written whole: created on a hidden sibling, renamed into place. A run or
    a ladder directory also holds its report: the page and each figure beside it."""

    REPORT = "report.html"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    @classmethod
    @contextlib.contextmanager
    def create(cls, final: str | os.PathLike):
        """One on a hidden sibling of `final`, renamed to `final` when the block completes."""
        with atomic_path(Path(final), directory=True) as tmp:
            yield cls(tmp)

    # -- the report (trainer/report.py)

    def write_report(self, html: str) -> Path:
        return write_text_atomic(self.file(self.REPORT), html)

    def write_report_figure(self, name: str, png: bytes) -> str:
        """Write `report_<name>.png` beside the page; returns its file name."""
        file = f"report_{name}.png"
        with atomic_path(self.file(file)) as tmp:
            tmp.write_bytes(png)
        return file


class RunDir(Directory):
    """One run directory: every file of a run is read and written here and nowhere else."""

    CONFIG = "config.json"
    METRICS = "metrics.json"
    HISTORY = "history.json"
    WEIGHTS = "model.safetensors"
    OPTIMIZER = "optimizer.safetensors"
    PREPROCESSING = "preprocessing.json"
    ID_TABLES = ("vocab", "train_counts")  # <kind>_<id field>.parquet beside preprocessing.json
    CALIBRATION = "calibration.json"
    COLD_START = "cold_start.md"
    TEXT = "text"
    PEER_MODEL = "model.txt"
    PARTS = EVAL_PARTS  # a scores_<part>.parquet each

    # -- state

    def is_finished(self) -> bool:
        return self.file(self.METRICS).is_file()

    def has_weights(self) -> bool:
        return self.file(self.WEIGHTS).is_file()

    # -- config.json

    def write_config(self, doc: dict) -> None:
        write_json(self.file(self.CONFIG), {"format": CONFIG_FORMAT, **doc})

    def config(self) -> dict:
        """config.json in the current format; an error that says what to do when it cannot be read."""
        path = self.file(self.CONFIG)
        if not path.is_file():
            raise RunError(f"{self.path} has no {self.CONFIG}: not a run directory")
        try:
            return normalise_config(read_json(path, "run config"))
        except RunError as e:
            raise RunError(f"{path}: {e}") from None

    def options(self) -> dict:
        """The options the run was started with (FitConfig fields for a neural run)."""
        return self.config()["config"]

    # -- metrics, history, cold start

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.file(self.METRICS), metrics)

    def metrics(self) -> dict:
        return read_json(self.file(self.METRICS), "metrics")

    def write_history(self, history: list[dict]) -> None:
        write_json(self.file(self.HISTORY), history)

    def history(self) -> list[dict] | None:
        path = self.file(self.HISTORY)
        return read_json(path, "history") if path.is_file() else None

    def write_cold_start(self, markdown: str) -> None:
        write_text_atomic(self.file(self.COLD_START), markdown)

    # -- preprocessing

    def write_preprocessing(self, state: dict) -> None:
        write_json(self.file(self.PREPROCESSING), state, indent=1)

    def preprocessing(self) -> dict | None:
        path = self.file(self.PREPROCESSING)
        return read_json(path, "preprocessing") if path.is_file() else None

    def id_table_path(self, kind: str, field: str) -> Path:
        if kind not in self.ID_TABLES:
            raise ValueError(f"unknown id table {kind!r} (one of {', '.join(self.ID_TABLES)})")
        return self.file(f"{kind}_{field}.parquet")

    def write_id_table(self, kind: str, field: str, columns: dict) -> None:
        """An id field's vocabulary (`vocab`) or its training-day impressions (`train_counts`)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        with atomic_path(self.id_table_path(kind, field)) as tmp:
            pq.write_table(pa.table(columns), tmp)

    def id_table(self, kind: str, field: str):
        import pyarrow.parquet as pq

        return pq.read_table(self.id_table_path(kind, field))

    # -- per-row scores

    def scores_path(self, part: str) -> Path:
        return self.file(f"scores_{part}.parquet")

    def write_scores(self, part: str, columns: dict) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        with atomic_path(self.scores_path(part)) as tmp:
            pq.write_table(pa.table(columns), tmp)

    def scores(self, part: str):
        """The scores table of one part (a pyarrow Table), or None when the run has none."""
        import pyarrow.parquet as pq

        path = self.scores_path(part)
        return pq.read_table(path) if path.is_file() else None

    # -- weights

    def _write_tensors(self, name: str, tensors: dict) -> None:
        from safetensors.torch import save_file

        with atomic_path(self.file(name)) as tmp:
            save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp))

    def _read_tensors(self, name: str) -> dict:
        from safetensors.torch import load_file

        return load_file(self.file(name))

    def write_weights(self, state: dict) -> None:
        self._write_tensors(self.WEIGHTS, state)

    def weights(self) -> dict:
        return self._read_tensors(self.WEIGHTS)

    def write_optimizer(self, moments: dict) -> None:
        self._write_tensors(self.OPTIMIZER, moments)

    def optimizer(self) -> dict:
        """The Adam moments a run kept; empty for a run written without them."""
        return self._read_tensors(self.OPTIMIZER) if self.file(self.OPTIMIZER).is_file() else {}

    # -- calibration

    def write_calibration(self, doc: dict) -> None:
        write_json(self.file(self.CALIBRATION), doc, indent=None)

    def calibration(self) -> dict | None:
        """calibration.json, or None for a run written before calibration existed."""
        path = self.file(self.CALIBRATION)
        return read_json(path, "calibration") if path.is_file() else None

    # -- the content side (text/, written and read by embeddings.persist)

    def write_text_side(self, featurizer) -> None:
        with atomic_path(self.file(self.TEXT), directory=True) as tmp:
            featurizer.save(tmp)

    def text_side(self) -> Path:
        path = self.file(self.TEXT)
        if not path.is_dir():
            raise RunError(f"{self.path} uses text but has no {self.TEXT}/ directory: fit the run again")
        return path

    # -- a LightGBM peer's model and text components

    def write_peer_model(self, booster, num_iteration: int) -> None:
        with atomic_path(self.file(self.PEER_MODEL)) as tmp:
            booster.save_model(str(tmp), num_iteration=num_iteration)

    def write_peer_text_components(self, side: str, components) -> None:
        components.save(self.file(f"text_svd_{side}"))


class LadderDir(Directory):
    """A ladder directory (`trainer ladder`): its summary, as JSON and as a Markdown table, and one
    run directory per rung and seed under `runs/`."""

    SUMMARY = "ladder.json"
    TABLE = "ladder.md"
    RUNS = "runs"

    def is_ladder(self) -> bool:
        return self.file(self.SUMMARY).is_file()

    def write_summary(self, doc: dict, table: str) -> None:
        write_json(self.file(self.SUMMARY), doc)
        write_text_atomic(self.file(self.TABLE), table)

    def summary(self) -> dict:
        return read_json(self.file(self.SUMMARY), "ladder")

    def run_path(self, rung: str, seed: int) -> Path:
        return self.file(self.RUNS) / f"{rung}-seed{seed}"

    def runs(self, rung: str) -> list[RunDir]:
        """The run directories of one rung that are there, by seed."""
        return [RunDir(p) for p in sorted(self.file(self.RUNS).glob(f"{rung}-seed*"))]


class ExportDir(Directory):
    """An export of a run (`trainer export`): the ONNX scoring graph and its manifest, written whole."""

    GRAPH = "model.onnx"
    MANIFEST = "manifest.json"

    def graph_path(self) -> Path:
        return self.file(self.GRAPH)

    def write_manifest(self, doc: dict) -> None:
        write_json(self.file(self.MANIFEST), doc)

    def manifest(self) -> dict:
        return read_json(self.file(self.MANIFEST), "export manifest")
