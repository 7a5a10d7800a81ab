"""Text encoding speed and faithfulness of every encoder backend, on English and Chinese text.

    python bench/embeddings.py [--texts 10000] [--backends legacy,torch,...] [--threads 1,2]

Generates the same world twice (`python -m synthetic generate --lang en` and `--lang zh`), takes
--texts unique user and item texts of each language (as the featurizer builds them), and encodes
them with the text encoder (all-MiniLM-L6-v2, last4-mean pooling) on every backend, each backend
in its own process so that its peak RSS is its own. Per backend and language it prints texts/s
on each thread count, the median and 5th-percentile cosine to torch float32, and peak RSS.

`legacy` is the float32 path as it was before backends existed (texts sorted by characters,
padding per batch by the tokenizer), kept here so every speed-up is measured side by side with
it in the same run. Model loading, export and distillation (made once, cached) are outside the
timings; the first backend run makes them if the cache is empty.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Run as `python bench/embeddings.py`, this file's directory comes first on sys.path and the
# file's name would shadow the embeddings package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from embeddings.backends import BACKENDS, STATED_COSINE

LANGS = ("en", "zh")


def build_texts(n: int, seed: int, out: Path) -> dict[str, list[str]]:
    """--texts unique non-empty texts per language, user and item texts in their natural mix."""
    import pyarrow.csv as pcsv

    from embeddings.text import item_texts, user_texts

    texts = {}
    for lang in LANGS:
        raw = out / f"raw-{lang}"
        subprocess.run([sys.executable, "-m", "synthetic", "generate", "--rows", str(max(20_000, 10 * n)),
                        "--seed", str(seed), "--lang", lang, "--out", str(raw), "--quiet", "--bad-rate", "0"],
                       check=True)
        parse = pcsv.ParseOptions(newlines_in_values=True)
        tables = [pcsv.read_csv(p, parse_options=parse) for p in sorted(raw.glob("part-*.csv"))]
        unique = list(dict.fromkeys(t for table in tables for t in (*user_texts(table), *item_texts(table)) if t))
        rng = np.random.default_rng(seed)
        texts[lang] = [unique[i] for i in rng.permutation(len(unique))[:n]]
    return texts


def legacy_encode(texts: list[str], max_tokens: int, batch_size: int) -> np.ndarray:
    """The float32 path before backends: sorted by characters, padded per batch by the tokenizer."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from embeddings.encoder import default_model_path

    global _legacy
    if "_legacy" not in globals():
        path = default_model_path()
        _legacy = (AutoTokenizer.from_pretrained(path, local_files_only=True),
                   AutoModel.from_pretrained(path, output_hidden_states=True, local_files_only=True).eval())
    tokenizer, model = _legacy
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            tokens = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_tokens,
                               return_tensors="pt")
            hidden = model(**tokens).hidden_states
            layers = torch.stack(hidden[-4:]).mean(0)
            mask = tokens["attention_mask"].unsqueeze(-1).to(layers.dtype)
            out[idx] = ((layers * mask).sum(1) / mask.sum(1).clamp(min=1.0)).numpy()
    return out


def child(args) -> None:
    """One backend: encode each language at each thread count; write timings and vectors."""
    import torch

    from embeddings.encoder import HFEncoder

    texts = json.loads(Path(args.texts_file).read_text())
    if args.child == "legacy":
        encode = lambda t: legacy_encode(t, args.max_tokens, args.batch_size)
    else:
        encoder = HFEncoder(max_tokens=args.max_tokens, batch_size=args.batch_size, device="cpu",
                            backend=args.child)
        encode = encoder.encode
    result = {}
    for lang in LANGS:
        for threads in args.thread_counts:
            torch.set_num_threads(threads)
            encode(texts[lang][:16])  # load, export or distil, and warm up outside the timing
            t0 = time.perf_counter()
            vectors = encode(texts[lang])
            seconds = time.perf_counter() - t0
            result[f"{lang}/{threads}"] = len(texts[lang]) / seconds
        np.save(Path(args.out_dir) / f"{args.child}-{lang}.npy", vectors)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=10_000, help="unique texts per language (default %(default)s)")
    parser.add_argument("--backends", default=",".join(("legacy", *BACKENDS)),
                        help="comma list; legacy is the float32 path before backends (default: all)")
    parser.add_argument("--threads", default="1,2", help="thread counts (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="encoder batch (default %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=64, help="token limit (default %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default %(default)s)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--texts-file", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.thread_counts = [int(t) for t in args.threads.split(",")]
    if args.child:
        return child(args)
    backends = args.backends.split(",")
    unknown = set(backends) - {"legacy", *BACKENDS}
    if unknown:
        parser.error(f"unknown backend(s) {sorted(unknown)}; choose from legacy, {', '.join(BACKENDS)}")
    if "torch" not in backends:
        backends.insert(0, "torch")  # the float32 reference of every cosine
    backends.sort(key=lambda b: b != "torch")

    with tempfile.TemporaryDirectory(prefix="bench-emb-") as tmp:
        texts = build_texts(args.texts, args.seed, Path(tmp))
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        rows = {}
        for backend in backends:
            cmd = [sys.executable, __file__, "--child", backend, "--texts-file", str(texts_file),
                   "--out-dir", tmp, "--threads", args.threads, "--batch-size", str(args.batch_size),
                   "--max-tokens", str(args.max_tokens)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                  env={**os.environ, "TQDM_DISABLE": "1"})
            if done.returncode != 0:
                print(f"{backend}: failed\n{done.stderr[-1500:]}", file=sys.stderr)
                continue
            rows[backend] = json.loads(done.stdout.strip().splitlines()[-1])
            for lang in LANGS:
                cos = cosines(np.load(Path(tmp) / f"{backend}-{lang}.npy"), np.load(Path(tmp) / f"torch-{lang}.npy"))
                rows[backend][f"{lang}/cos"] = (float(np.median(cos)), float(np.percentile(cos, 5)))
            print(f"{backend}: done", file=sys.stderr, flush=True)

    base = rows.get("legacy") or rows["torch"]
    t1 = args.thread_counts[0]
    print(f"\n{args.texts:,} unique texts per language; load average {os.getloadavg()[0]:.2f} "
          f"(1 min) at the end; speed-up against {'legacy' if 'legacy' in rows else 'torch'} "
          f"on {t1} thread{'s' if t1 > 1 else ''}\n")
    head = " | ".join(f"{lang} {t} thr" for lang in LANGS for t in args.thread_counts)
    print(f"| backend | {head} | x (en, zh) | median cos en / zh (p5) | stated | peak RSS MB |")
    print("|---|" + "---:|" * (len(LANGS) * len(args.thread_counts)) + "---:|---:|---:|---:|")
    for backend, r in rows.items():
        speeds = " | ".join(f"{r[f'{lang}/{t}']:,.0f}" for lang in LANGS for t in args.thread_counts)
        ups = ", ".join(f"{r[f'{lang}/{t1}'] / base[f'{lang}/{t1}']:.1f}" for lang in LANGS)
        cos = " / ".join(f"{r[f'{lang}/cos'][0]:.4f} ({r[f'{lang}/cos'][1]:.3f})" for lang in LANGS)
        stated = STATED_COSINE.get(backend, "")
        print(f"| {backend} | {speeds} | {ups} | {cos} | {stated} | {r['peak_rss_mb']:,.0f} |")


if __name__ == "__main__":
    main()
