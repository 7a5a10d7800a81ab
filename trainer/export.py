"""`python -m trainer export RUN_DIR --out DIR`: a run's scoring graph as ONNX, with a manifest.

The graph takes the model's feature arrays (what `scoring.to_model` hands the model: id indices, the
standardised dense block, the scene index, text vectors and token ids) and returns calibrated click
probabilities of each row's own scene. The id embedding look-ups and the per-scene calibration are
inside it; the preprocessing that turns raw fields into those arrays (vocabularies, standardisation,
text vectors) stays the run's own (`Features`), described in manifest.json so that a serving stack in
another language can feed the graph.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import calibration as C
from .artifacts import ExportDir
from .table import TrainerError

OPSET = 17


class _Recorder(dict):
    """A batch that remembers which arrays the model read."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.read: list[str] = []

    def __getitem__(self, key):
        if key not in self.read:
            self.read.append(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default  # noqa: SIM401 (dict.get would skip the record)


def model_inputs(model: nn.Module, batch: dict[str, torch.Tensor]) -> list[str]:
    """The arrays `model` reads from a batch, in a fixed order (the scene always among them)."""
    rec = _Recorder(batch)
    with torch.inference_mode():
        model(rec)
    return sorted(set(rec.read) | {"scene"})


class CalibratedProbability(nn.Module):
    """The run's per-scene calibration (calibration.py) as tensor operations ONNX can hold.

    Isotonic maps are piecewise linear: y0 + sum of slope_k * clamp(p - x_k, 0, x_{k+1} - x_k), with
    every scene padded to the same number of knots by flat segments."""

    def __init__(self, cal: C.Calibration, n_scenes: int):
        super().__init__()
        self.method = cal.method
        mapped = torch.zeros(n_scenes, dtype=torch.bool)
        for s in cal.maps:
            mapped[s] = True
        self.register_buffer("mapped", mapped)
        if cal.method == "platt":
            a, b = torch.ones(n_scenes, dtype=torch.float64), torch.zeros(n_scenes, dtype=torch.float64)
            for s, m in cal.maps.items():
                a[s], b[s] = m["a"], m["b"]
            self.register_buffer("a", a)
            self.register_buffer("b", b)
        elif cal.method == "isotonic":
            k = max((len(m["x"]) for m in cal.maps.values()), default=1)
            x0 = torch.zeros(n_scenes, k, dtype=torch.float64)
            width = torch.zeros(n_scenes, k, dtype=torch.float64)
            slope = torch.zeros(n_scenes, k, dtype=torch.float64)
            y0 = torch.zeros(n_scenes, dtype=torch.float64)
            for s, m in cal.maps.items():
                x, y = np.asarray(m["x"]), np.asarray(m["y"])
                y0[s] = y[0]
                x0[s, : len(x)] = torch.from_numpy(x)
                dx, dy = np.diff(x), np.diff(y)
                width[s, : len(dx)] = torch.from_numpy(dx)
                slope[s, : len(dx)] = torch.from_numpy(np.divide(dy, dx, out=np.zeros_like(dy), where=dx > 0))
            self.register_buffer("x0", x0)
            self.register_buffer("width", width)
            self.register_buffer("slope", slope)
            self.register_buffer("y0", y0)

    def forward(self, p: torch.Tensor, scene: torch.Tensor) -> torch.Tensor:
        p = p.double()
        if self.method == "platt":
            q = p.clamp(C.EPS, 1 - C.EPS)
            out = torch.sigmoid(self.a[scene] * (torch.log(q) - torch.log1p(-q)) + self.b[scene])
        elif self.method == "isotonic":
            ramps = torch.minimum(torch.relu(p[:, None] - self.x0[scene]), self.width[scene])
            out = (self.y0[scene] + (self.slope[scene] * ramps).sum(1) + C.TIE_BREAK * p).clamp(C.EPS, 1 - C.EPS)
        else:
            return p
        return torch.where(self.mapped[scene], out, p)


class ScoringGraph(nn.Module):
    """Feature arrays (positional, in `names` order) -> calibrated probability of the row's scene."""

    def __init__(self, model: nn.Module, names: list[str], cal: C.Calibration, n_scenes: int):
        super().__init__()
        self.model, self.names = model, list(names)
        self.calibrate = CalibratedProbability(cal, n_scenes)

    def forward(self, *arrays: torch.Tensor) -> torch.Tensor:
        from .scoring import own_scene_logit, split_output

        batch = dict(zip(self.names, arrays))
        logits, _ = split_output(self.model(batch))
        p = torch.sigmoid(own_scene_logit(logits, batch["scene"]))
        return self.calibrate(p, batch["scene"])


def example_batch(run, rows: int = 8) -> dict[str, torch.Tensor]:
    """A batch of the run's own shape, from its training table's last day."""
    from .scoring import to_model
    from .table import Table

    table = Table(run.cfg["table"], need_text=run.features.featurizer is not None)
    batch = next(table.batches(table.days[-1:], run.features.columns, rows), None)
    if batch is None:
        raise TrainerError(f"the run's table {run.cfg['table']} has no rows to trace the model with")
    return to_model(run.features(batch), run.features, torch.device("cpu"))


def manifest(run, names: list[str], batch: dict[str, torch.Tensor]) -> dict:
    spec = run.cfg["spec"]
    return {
        "graph": ExportDir.GRAPH,
        "model": run.cfg["model"],
        "opset": OPSET,
        "inputs": [{"name": n, "dtype": str(batch[n].dtype).removeprefix("torch."),
                    "shape": ["batch", *batch[n].shape[1:]]} for n in names],
        "output": {"name": "probability", "dtype": "float64", "shape": ["batch"],
                   "meaning": "calibrated click probability of the row's own scene"},
        "scenes": spec["scenes"],
        "id_fields": spec["id_fields"],
        "dense_columns": run.prep.state["dense_columns"],
        "calibration": run.calibration.method,
        "preprocessing": "the run directory's preprocessing.json and vocab_*.parquet turn raw fields "
                         "into ids and dense; its content files give the text blocks and tokens",
    }


def export(run_dir: Path, out: Path) -> Path:
    from .scoring import load_run

    run = load_run(Path(run_dir), "cpu")
    run.model.eval()
    batch = example_batch(run)
    names = model_inputs(run.model, batch)
    graph = ScoringGraph(run.model, names, run.calibration, len(run.prep.scenes)).eval()
    out = Path(out)
    if out.exists():
        raise TrainerError(f"{out} already exists; choose another --out")
    with ExportDir.create(out) as export_dir, warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated, that negative indices would be wrong
        # and that shape checks become constants; the graph has no negative index, its shapes are
        # fixed by the run, and the parity test holds it to the torch model.
        warnings.simplefilter("ignore", (UserWarning, DeprecationWarning, FutureWarning, torch.jit.TracerWarning))
        torch.onnx.export(graph, tuple(batch[n] for n in names), str(export_dir.graph_path()), input_names=names,
                          output_names=["probability"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={n: {0: "batch"} for n in [*names, "probability"]})
        export_dir.write_manifest(manifest(run, names, batch))
    return out


class OnnxModel:
    """The exported graph behind the same call as the torch model in `scoring.score`: a batch of
    feature arrays in, probabilities out."""

    def __init__(self, export_dir: Path, threads: int = 1):
        import onnxruntime as ort

        export = ExportDir(export_dir)
        self.manifest = export.manifest()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(export.graph_path()), opts,
                                            providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        feed = {n: batch[n].cpu().numpy() for n in self.names}
        return self.session.run(["probability"], feed)[0]
