"""Encoder backends: each loads offline from the bundled model and agrees with torch float32 to
its stated cosine; the vector cache keeps each backend's vectors apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

from embeddings import TextFeaturizer
from embeddings.backends import BACKENDS, FAST_BACKEND, STATED_COSINE
from embeddings.cache import CachedEncoder
from embeddings.encoder import HFEncoder, SentenceEncoder

TEXTS = ["best sushi ramen deal today. sushi, ramen", "official certified espresso grinder",
         "clearance generic laptop charger, usb", "精选机票酒店优惠. 机票，酒店", "护士处方药店奖励",
         "年份梅洛霞多丽新品技巧. 梅洛, 霞多丽", "", "a", "coffee beans " * 30]


@pytest.fixture(scope="module")
def agreement(tmp_path_factory) -> dict:
    """Every backend in a fresh process with the Hub switched off and an empty model cache:
    median and lowest cosine to float32 for both encoders, and whether text i's vector is
    nearest to its own float32 vector."""
    tmp = tmp_path_factory.mktemp("backends")
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from embeddings.encoder import HFEncoder, SentenceEncoder
        texts = {TEXTS!r}
        out = {{}}
        for name, cls in (("text", HFEncoder), ("sentence", SentenceEncoder)):
            ref = cls(device="cpu", backend="torch").encode(texts)
            for backend in {list(BACKENDS)!r}:
                try:
                    v = cls(device="cpu", backend=backend).encode(texts)
                except ImportError as e:
                    out[f"{{name}}/{{backend}}"] = {{"missing": str(e)}}
                    continue
                unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
                sims = unit(v) @ unit(ref).T
                cos = np.diag(sims)
                out[f"{{name}}/{{backend}}"] = {{"median": float(np.median(cos)), "min": float(cos.min()),
                                                "own_nearest": float(np.mean(sims.argmax(1) == np.arange(len(texts)))),
                                                "shape": list(v.shape)}}
        print(json.dumps(out))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp / "hf"),
           "M2CTR_ENCODER_CACHE": str(tmp / "encoders"), "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=False, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["_made"] = sorted(p.name for p in (tmp / "encoders").rglob("*") if p.parent.parent == tmp / "encoders")
    return result


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("encoder", ["text", "sentence"])
def test_backend_loads_offline_and_agrees_with_float32(agreement, encoder, backend):
    got = agreement[f"{encoder}/{backend}"]
    if "missing" in got:
        pytest.skip(got["missing"])  # an optional package of the fast extra is not installed
    assert got["shape"] == [len(TEXTS), 384]
    assert got["median"] >= STATED_COSINE[backend], got
    # Every text's vector is still nearest to its own float32 vector among these texts.
    assert got["own_nearest"] >= (0.5 if backend == "static" else 1.0), got


def test_exported_models_are_made_once_and_kept(agreement):
    made = agreement["_made"]
    assert {"last4-mean.onnx", "last4-mean.int8.onnx", "sentence.onnx", "sentence.int8.onnx"} <= set(made), made
    if "missing" not in agreement["text/openvino-int8"]:
        assert {"last4-mean.openvino-int8", "sentence.openvino-int8"} <= set(made), made


@pytest.mark.parametrize("encoder", [HFEncoder, SentenceEncoder])
def test_a_texts_vector_does_not_depend_on_the_texts_encoded_with_it(encoder):
    # The default backend, on texts of many lengths. Padded to their batch's longest text, about
    # one int8 vector in a hundred moved (up to 0.02), so a cache's contents depended on which
    # texts each run had encoded together, and a fresh cache gave another fit. (onnxruntime's
    # kernels and torch's still round by batch size, in float32's last bits; dynamic int8 takes
    # its activation scales from the whole batch.)
    words = " ".join(TEXTS[:6]).replace(".", "").replace(",", "").split()
    texts = [" ".join(words[i % 11:i % 11 + 1 + i % 37]) + f" {i}" for i in range(600)]
    try:
        enc = encoder(device="cpu", backend=FAST_BACKEND)
        together = enc.encode(texts)
    except ImportError as e:
        pytest.skip(str(e))  # an optional package of the fast extra is not installed
    alone = np.concatenate([enc.encode([t]) for t in texts])
    np.testing.assert_array_equal(together, alone)
    shuffled = np.random.default_rng(0).permutation(len(texts))
    np.testing.assert_array_equal(enc.encode([texts[i] for i in shuffled]), together[shuffled])


def test_the_cache_never_mixes_vectors_of_two_backends(tmp_path, monkeypatch):
    monkeypatch.setenv("M2CTR_ENCODER_CACHE", str(tmp_path / "encoders"))
    texts = TEXTS[:5]
    first = CachedEncoder(HFEncoder(device="cpu", backend="torch"), tmp_path / "cache")
    torch_vectors = first.vectors(texts)
    other = CachedEncoder(HFEncoder(device="cpu", backend="onnx-int8"), tmp_path / "cache")
    int8_vectors = other.vectors(texts)
    assert other.n_cache_hits == 0 and other.n_encoded == len(texts)  # torch's vectors not reused
    assert not np.allclose(int8_vectors, torch_vectors, atol=1e-6)
    np.testing.assert_allclose(int8_vectors, HFEncoder(device="cpu", backend="onnx-int8").encode(texts), atol=1e-6)
    again = CachedEncoder(HFEncoder(device="cpu", backend="onnx-int8"), tmp_path / "cache")
    np.testing.assert_array_equal(again.vectors(texts), int8_vectors)
    assert again.n_cache_hits == len(texts) and again.n_encoded == 0
    back = CachedEncoder(HFEncoder(device="cpu", backend="torch"), tmp_path / "cache")
    np.testing.assert_array_equal(back.vectors(texts), torch_vectors)
    for part in (tmp_path / "cache").rglob("part-*.parquet"):
        table = pq.read_table(part)
        assert len(set(table.column("backend").to_pylist())) == 1
        assert part.parent.parent.parent.name == table.column("backend")[0].as_py()


def test_the_cache_never_mixes_vectors_cut_at_two_token_caps(tmp_path):
    long_text = TEXTS[-1]  # 60 words: cut at 8 tokens, whole at 64
    texts = [long_text, TEXTS[0]]
    short = CachedEncoder(HFEncoder(device="cpu", backend="torch", max_tokens=8), tmp_path / "cache")
    cut = short.vectors(texts)
    full = CachedEncoder(HFEncoder(device="cpu", backend="torch", max_tokens=64), tmp_path / "cache")
    whole = full.vectors(texts)
    assert full.n_cache_hits == 0 and full.n_encoded == len(texts)  # the 8-token vectors not reused
    assert not np.allclose(cut[0], whole[0], atol=1e-3)
    np.testing.assert_allclose(whole, HFEncoder(device="cpu", backend="torch", max_tokens=64).encode(texts), atol=1e-5)
    again = CachedEncoder(HFEncoder(device="cpu", backend="torch", max_tokens=8), tmp_path / "cache")
    np.testing.assert_array_equal(again.vectors(texts), cut)
    assert again.n_cache_hits == len(texts)
    for part in (tmp_path / "cache").rglob("part-*.parquet"):
        caps = set(pq.read_table(part).column("max_tokens").to_pylist())
        assert caps == {int(part.parent.name.removeprefix("tokens-"))}


def test_vectors_cached_before_the_cap_was_keyed_are_read_at_64_tokens_only(tmp_path):
    texts = TEXTS[:3]
    first = CachedEncoder(HFEncoder(device="cpu", backend="torch"), tmp_path / "cache")
    vectors = first.vectors(texts)
    # Move the parts where a cache without the cap in its key kept them: under <pooling>/.
    for part in list((tmp_path / "cache").rglob("part-*.parquet")):
        part.rename(part.parent.parent / part.name)
    at64 = CachedEncoder(HFEncoder(device="cpu", backend="torch"), tmp_path / "cache")
    np.testing.assert_array_equal(at64.vectors(texts), vectors)
    assert at64.n_cache_hits == len(texts) and at64.n_encoded == 0
    at32 = CachedEncoder(HFEncoder(device="cpu", backend="torch", max_tokens=32), tmp_path / "cache")
    at32.vectors(texts)
    assert at32.n_cache_hits == 0 and at32.n_encoded == len(texts)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="encoder backend must be one of"):
        HFEncoder(device="cpu", backend="tensorrt")


def test_a_cpu_only_backend_stays_on_the_cpu_where_there_is_a_gpu(monkeypatch):
    # A run fitted with openvino-int8 (what `auto` picks on a CPU) and loaded on a machine with a
    # GPU must still encode as it was fitted, not fail asking for int8 on cuda.
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert HFEncoder(backend="openvino-int8").device == "cpu"
    assert SentenceEncoder(backend="static").device == "cpu"
    assert HFEncoder(backend="torch").device == "cuda"
    assert HFEncoder(device="cuda", backend="torch-bf16").device == "cuda"


def _fast_extra_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("openvino", "nncf"))


@pytest.mark.skipif(not _fast_extra_installed(), reason="the fast extra (openvino, nncf) is not installed")
def test_auto_runs_the_fast_backend_where_it_can_and_torch_elsewhere(tmp_path):
    assert HFEncoder(device="cpu").backend == FAST_BACKEND  # the bundled model, on the CPU
    assert SentenceEncoder(device="cpu").backend == FAST_BACKEND
    assert HFEncoder("BAAI/bge-small-zh-v1.5", device="cpu").backend == "torch"  # a Hub name: no local copy
    assert HFEncoder(device="cuda").backend == "torch"
    cls_pooled = tmp_path / "cls-model"
    (cls_pooled / "1_Pooling").mkdir(parents=True)
    (cls_pooled / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert SentenceEncoder(str(cls_pooled), device="cpu").backend == "torch"
    assert HFEncoder(device="cpu", backend="onnx-int8").backend == "onnx-int8"  # asked for by name


@pytest.mark.skipif(not _fast_extra_installed(), reason="the fast extra (openvino, nncf) is not installed")
def test_a_run_records_the_backend_auto_picked():
    # One backend for both encoders: a sentence model that only torch can run takes the text
    # encoder to torch too, so a run never mixes backends.
    assert TextFeaturizer({"device": "cpu", "cache_dir": ""}).cfg.encoder_backend == FAST_BACKEND
    hub = TextFeaturizer({"device": "cpu", "cache_dir": "", "sentence_model": "BAAI/bge-small-zh-v1.5"})
    assert hub.cfg.encoder_backend == "torch"
    assert hub.vectors.encoder.encoder.backend == hub.fallback.encoder.encoder.backend == "torch"
