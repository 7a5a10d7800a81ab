"""How the text encoders run: one pooled forward pass per backend, all from the same weights.

A runner maps token ids and an attention mask to one pooled float32 vector per text; the static
backend maps texts to vectors directly. `encode_sorted` feeds a runner batches of texts of one
token count, so no text is padded: short texts do not pay for long ones, and with OpenVINO a
text's vector depends on the text alone, not on the texts that happened to share its batch.

Exported (ONNX, int8) and distilled (static) models are made once, on first use, from the local
weights with nothing downloaded, and kept in `artifact_dir()`; a lock file lets concurrent
processes wait for the one making them instead of making them twice.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from m2ctr.atomic import atomic_path

BACKENDS = ("torch", "torch-bf16", "onnx", "onnx-int8", "openvino", "openvino-int8", "static")
# `auto`, the default, runs FAST_BACKEND wherever it can (`auto_backend`) and torch elsewhere.
# Chosen by measurement (README, Fast encoding): 3.6-4.3x the float32 path at a median cosine of
# 0.996-0.998, and fusion within seed noise of float32 on validation over three seeds in English
# and Chinese.
AUTO = "auto"
FAST_BACKEND = "openvino-int8"
DEFAULT_BACKEND = AUTO
CHOICES = (AUTO, *BACKENDS)
# The backends that run wherever torch does; the others run on the CPU only (`load_runner`).
ANY_DEVICE = ("torch", "torch-bf16")
# The median cosine to torch float32 each backend is held to, for both encoders (tests/
# test_backends.py; bench/embeddings.py measures the text encoder on English and Chinese text).
# int8 keeps ~0.996 on the text encoder's layer mix and ~0.989 on the normalised last layer of
# the sentence encoder. Static vectors keep only the direction each token has on its own: a
# cheaper representation, not an approximation.
STATED_COSINE = {"torch": 0.99999, "torch-bf16": 0.999, "onnx": 0.9999, "onnx-int8": 0.985,
                 "openvino": 0.999, "openvino-int8": 0.985, "static": 0.3}
# Texts are tokenised this many at a time, then batched by token count within the chunk.
TOKEN_CHUNK = 8192
# Install hint for the backends whose packages are an optional extra.
_EXTRA = "pip install 'm2ctr[fast]'"


def check_backend(name: str) -> None:
    if name not in CHOICES:
        raise ValueError(f"encoder backend must be one of {CHOICES}, got {name!r}")


def auto_backend(models: Iterable[tuple[str, bool, str]], device: str) -> str:
    """What `auto` runs for encoders of (name or path, is_local, pooling): FAST_BACKEND where all
    of them can (local copies, the CPU, the fast extra installed, a sentence model that
    mean-pools), torch elsewhere (a Hub name, a GPU, no extra)."""
    import importlib.util

    if device != "cpu" or not all(importlib.util.find_spec(m) for m in ("openvino", "nncf")):
        return "torch"
    for name_or_path, is_local, pooling in models:
        if not is_local:
            return "torch"
        if pooling == "sentence":
            try:
                _check_sentence_model(name_or_path)
            except ValueError:
                return "torch"
    return FAST_BACKEND


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is
    emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def artifact_dir() -> Path:
    return Path(os.environ.get("M2CTR_ENCODER_CACHE") or Path.home() / ".cache" / "m2ctr" / "encoders")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _import(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"this encoder backend needs {module.split('.')[0]}: {_EXTRA}") from e


def pool_layers(hidden_states, pooling: str) -> torch.Tensor:
    """The per-token layer mix a pooling averages: [batch, tokens, hidden]."""
    if pooling == "last4-mean":
        return torch.stack(hidden_states[-4:]).mean(0)
    if pooling == "first-last-avg":
        return (hidden_states[1] + hidden_states[-1]) / 2
    return hidden_states[-1]


def pool(hidden_states, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Mask-aware mean over tokens of a layer mix. `sentence`: the last layer, L2-normalised
    (what a mean-pooling sentence-transformer computes)."""
    layers = pool_layers(hidden_states, pooling)
    m = mask.unsqueeze(-1).to(layers.dtype)
    pooled = (layers * m).sum(1) / m.sum(1).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled, dim=-1) if pooling == "sentence" else pooled


class _Pooled(torch.nn.Module):
    """The model and its pooling as one module: what the torch runner calls and ONNX exports."""

    def __init__(self, model, pooling: str):
        super().__init__()
        self.model, self.pooling = model, pooling

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return pool(out.hidden_states, attention_mask, self.pooling)


def _tokenizer(name_or_path: str, is_local: bool):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name_or_path, **({"local_files_only": True} if is_local else {}))


def _load(name_or_path: str, is_local: bool):
    from transformers import AutoModel

    kwargs = {"local_files_only": True} if is_local else {}
    return _tokenizer(name_or_path, is_local), AutoModel.from_pretrained(name_or_path, **kwargs).eval()


def _check_sentence_model(name_or_path: str) -> None:
    """Backends other than torch pool a sentence model themselves: only mean pooling is done."""
    import json

    root = Path(name_or_path)
    config = root / "1_Pooling" / "config.json"
    if not root.is_dir() or not config.is_file():
        return  # a Hub name or a bare transformer: its mean pooling is the sentence-transformers default
    modes = {k for k, v in json.loads(config.read_text()).items() if k.startswith("pooling_mode") and v}
    if modes != {"pooling_mode_mean_tokens"}:
        raise ValueError(f"sentence model {name_or_path} pools with {sorted(modes)}; backends other "
                         "than torch run mean pooling only: use --encoder-backend torch")


class _Runner:
    tokenizer = None
    dim: int
    max_positions: int

    def _shape(self, tokenizer, config) -> None:
        self.tokenizer = tokenizer
        self.dim = int(config.hidden_size)
        self.max_positions = int(getattr(config, "max_position_embeddings", 512))


class TorchRunner(_Runner):
    def __init__(self, tokenizer, model, pooling: str, device: str, bf16: bool):
        self._shape(tokenizer, model.config)
        self.module = _Pooled(model.to(device), pooling)
        self.device, self.bf16 = device, bf16

    @torch.inference_mode()
    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.module(torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device))
        return out.float().cpu().numpy()


class SentenceRunner(_Runner):
    """A sentence-transformers model as it stands (float32, on its own device): its own modules pool
    and normalise, batched like every other runner."""

    def __init__(self, model):
        self._shape(model.tokenizer, model[0].auto_model.config)
        # a model may project its pooled vector (a Dense module): the width is the model's, not the
        # layer's. Renamed in sentence-transformers 6; keep working with 3.x-5.x.
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.model = model

    @torch.inference_mode()
    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        device = self.model.device
        features = {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": torch.from_numpy(mask).to(device)}
        return self.model(features)["sentence_embedding"].float().cpu().numpy()


class OnnxRunner(_Runner):
    """onnxruntime on CPU; one session per thread count, so `torch.set_num_threads` governs it too."""

    def __init__(self, tokenizer, config, path: Path):
        self._shape(tokenizer, config)
        self.path, self._sessions = path, {}

    def _session(self):
        threads = torch.get_num_threads()
        if threads not in self._sessions:
            ort = _import("onnxruntime")
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._sessions[threads] = ort.InferenceSession(str(self.path), options,
                                                           providers=["CPUExecutionProvider"])
        return self._sessions[threads]

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._session().run(None, {"input_ids": ids, "attention_mask": mask})[0]


class OpenVinoRunner(OnnxRunner):
    """The same ONNX graph (or its int8 OpenVINO IR) compiled by OpenVINO for the CPU."""

    def _session(self):
        threads = torch.get_num_threads()
        if threads not in self._sessions:
            ov = _import("openvino")
            self._sessions[threads] = ov.Core().compile_model(
                str(self.path), "CPU", {"INFERENCE_NUM_THREADS": threads})
        return self._sessions[threads]

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._session()({"input_ids": ids, "attention_mask": mask})[0]


class StaticRunner:
    """Static token vectors: no transformer at run time. The pooled mean over a text's tokens is
    kept, but each token brings the vector the model gives it when it stands alone (`_distil`,
    the method of model2vec), and [CLS] and [SEP] their mean over the vocabulary."""

    tokenizer = None

    def __init__(self, tokenizer, path: Path, pooling: str):
        self.words = tokenizer
        self.vectors = np.load(path / "tokens.npy")
        self.specials = np.load(path / "specials.npy")  # [CLS] + [SEP], summed
        self.n_specials = 2
        self.dim = int(self.vectors.shape[1])
        self.normalise = pooling == "sentence"

    def encode(self, texts: list[str], max_tokens: int) -> np.ndarray:
        ids = self.words(texts, add_special_tokens=False, truncation=True, max_length=max(1, max_tokens - 2),
                         return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        counts = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((i for row in ids for i in row), dtype=np.int64, count=int(counts.sum()))
        out = np.tile(self.specials, (len(texts), 1))
        has = counts > 0
        if has.any():
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[has]
            out[has] += np.add.reduceat(self.vectors[flat], starts, axis=0)
        out /= (counts + self.n_specials)[:, None]
        if self.normalise:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32, copy=False)


def _made_once(path: Path, make: Callable[[Path], None]) -> Path:
    """`path`, made by `make(tmp)` the first time (by one process; others wait for it)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            with atomic_path(path) as tmp:
                make(tmp)
    return path


def _export_onnx(name_or_path: str, is_local: bool, pooling: str, out: Path) -> None:
    import warnings

    from transformers import AutoModel

    # A fresh copy (tracing for export changes the module it traces), with plain matmul-softmax
    # attention: the pattern graph optimisers and quantisers recognise and fuse.
    tokenizer = _tokenizer(name_or_path, is_local)
    model = AutoModel.from_pretrained(name_or_path, attn_implementation="eager",
                                      **({"local_files_only": True} if is_local else {})).eval()
    example = tokenizer(["an example", "a longer example text"], padding=True, return_tensors="pt")
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "vector": {0: "batch"}}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Pooled(model, pooling), (example["input_ids"], example["attention_mask"]),
                          str(out), input_names=["input_ids", "attention_mask"], output_names=["vector"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)


def _quantise(source: Path, out: Path) -> None:
    import logging

    quantization = _import("onnxruntime.quantization")
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # its preprocessing hint
    # Per-channel int8 weights keep a cosine of ~0.996 to float32 where per-tensor ones give ~0.97.
    quantization.quantize_dynamic(str(source), str(out), weight_type=quantization.QuantType.QInt8,
                                  per_channel=True)


def calibration_texts() -> list[str]:
    """English and Chinese texts shaped like the featurizer's (entity lists and titles), generated
    once with a seed no benchmark uses: what static int8 quantisation measures activations on."""
    return Path(__file__).with_name("calibration.txt").read_text(encoding="utf-8").splitlines()


def _quantise_openvino(source: Path, tokenizer, out: Path, batch: int = 10) -> None:
    """Static int8 (NNCF post-training quantisation): weights and activations both int8, with
    activation ranges measured on `calibration_texts()`, so matmuls run on int8 instructions
    (AVX512-VNNI, AMX) without quantising activations on the fly. Written as OpenVINO IR."""
    ov, nncf = _import("openvino"), _import("nncf")
    texts = calibration_texts()
    feeds = []
    for lo in range(0, len(texts), batch):
        x = tokenizer(texts[lo:lo + batch], padding=True, truncation=True, max_length=128,
                      return_tensors="np", return_token_type_ids=False)
        feeds.append({k: x[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
    model = nncf.quantize(ov.Core().read_model(str(source)), nncf.Dataset(feeds),
                          model_type=nncf.ModelType.TRANSFORMER, subset_size=len(feeds))
    out.mkdir()
    ov.save_model(model, str(out / "model.xml"))


@torch.inference_mode()
def _distil(name_or_path: str, is_local: bool, pooling: str, out: Path, batch: int = 512) -> None:
    """Every vocabulary token through the model once, as the text `[CLS] t [SEP]`: the token's
    own position of the pooled layer mix, and [CLS] and [SEP] averaged over the vocabulary."""
    tokenizer, model = _load(name_or_path, is_local)
    n = len(tokenizer)
    tokens = np.empty((n, model.config.hidden_size), dtype=np.float32)
    specials = np.zeros(model.config.hidden_size, dtype=np.float64)
    layers = "last" if pooling == "sentence" else pooling
    for lo in tqdm(range(0, n, batch), desc="distil static vectors", unit="batch", leave=False):
        ids = torch.tensor([[tokenizer.cls_token_id, t, tokenizer.sep_token_id] for t in range(lo, min(n, lo + batch))])
        hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True).hidden_states
        mix = pool_layers(hidden, layers)
        tokens[lo:lo + len(ids)] = mix[:, 1].numpy()
        specials += (mix[:, 0] + mix[:, 2]).sum(0).double().numpy()
    out.mkdir()
    np.save(out / "tokens.npy", tokens)
    np.save(out / "specials.npy", (specials / n).astype(np.float32))


@lru_cache(maxsize=8)
def load_runner(name_or_path: str, is_local: bool, model_id: str, pooling: str, backend: str, device: str):
    """One loaded runner per model, pooling, backend and device per process."""
    check_backend(backend)
    if pooling == "sentence" and backend != "torch":
        _check_sentence_model(name_or_path)
    if backend != "torch" and not is_local:
        raise ValueError(f"encoder backend {backend!r} makes its model from a local copy; give "
                         f"--text-model / --sentence-model as a directory (see README, offline models)")
    home = artifact_dir() / _safe(model_id)
    if backend == "static":
        path = _made_once(home / f"{pooling}.static", lambda tmp: _distil(name_or_path, is_local, pooling, tmp))
        return StaticRunner(_tokenizer(name_or_path, is_local), path, pooling)
    tokenizer, model = _load(name_or_path, is_local)
    if backend in ANY_DEVICE:
        return TorchRunner(tokenizer, model, pooling, device, bf16=backend == "torch-bf16")
    if device != "cpu":
        raise ValueError(f"encoder backend {backend!r} runs on the CPU only; use torch or torch-bf16 on {device}")
    onnx = _made_once(home / f"{pooling}.onnx", lambda tmp: _export_onnx(name_or_path, is_local, pooling, tmp))
    if backend == "openvino-int8":
        ir = _made_once(home / f"{pooling}.openvino-int8", lambda tmp: _quantise_openvino(onnx, tokenizer, tmp))
        return OpenVinoRunner(tokenizer, model.config, ir / "model.xml")
    if backend == "onnx-int8":
        onnx = _made_once(home / f"{pooling}.int8.onnx", lambda tmp: _quantise(onnx, tmp))
    runner = OpenVinoRunner if backend == "openvino" else OnnxRunner
    return runner(tokenizer, model.config, onnx)


def encode_sorted(runner, texts: list[str], max_tokens: int, batch_size: int, desc: str) -> np.ndarray:
    """Vectors of `texts` in their order: tokenised a chunk at a time (cut at `max_tokens` and the
    model's limit) and run in batches of texts of one token count, so that none is padded.

    Padding is masked, yet it changes a vector's rounding: the pooled mean of a text padded to its
    batch's longest text differs in float32 (about 1e-6, for one text in seven) and in int8 (up to
    0.02, for about one in a hundred, where an activation rounds to the next step). With padding,
    what a vector cache held depended on which texts each earlier run encoded together, and two
    caches gave two fits of the same seed on the same table different scores. OpenVINO's vectors
    now depend on the text alone, whatever the batch and thread count; torch's and onnxruntime's
    kernels still round by the number of rows in a batch, in float32's last bits."""
    out = np.empty((len(texts), runner.dim), dtype=np.float32)
    bar = tqdm(total=len(texts), desc=desc, unit="text", disable=len(texts) <= batch_size, leave=False)
    with bar:
        for lo in range(0, len(texts), TOKEN_CHUNK):
            chunk = texts[lo:lo + TOKEN_CHUNK]
            if runner.tokenizer is None:  # static vectors: no forward pass to batch
                out[lo:lo + len(chunk)] = runner.encode(chunk, max_tokens)
                bar.update(len(chunk))
                continue
            max_length = min(max_tokens, runner.max_positions)
            ids = runner.tokenizer(chunk, truncation=True, max_length=max_length,
                                   return_attention_mask=False, return_token_type_ids=False)["input_ids"]
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            order = np.argsort(lengths, kind="stable")
            for same_length in np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1):
                for start in range(0, len(same_length), batch_size):
                    idx = same_length[start:start + batch_size]
                    batch = np.array([ids[i] for i in idx.tolist()], dtype=np.int64)
                    out[lo + idx] = runner(batch, np.ones_like(batch))
                    bar.update(len(idx))
    return out
