"""How long a fusion fit spends encoding text, on a generated raw set of any size.

    python -m synthetic generate --rows 1000000 --bad-rate 0 --out /tmp/raw1m
    python bench/fit_texts.py --raw /tmp/raw1m [--backend openvino-int8] [--threads 1]

A fit encodes each distinct non-empty text once with the text encoder (every user and item text
of every day: the training days when it fits, the later days as it scores them), and with the
sentence encoder the texts of rows whose user or item has zero or few impressions before the row's
day (the point-in-time buckets of `m2ctr.schema`; warm rows read the training mean instead). This
script takes those same texts from the raw CSV files, without building a warehouse, encodes them
with the fit's encoders and defaults on one backend, and prints the counts, the seconds of each
encoder and the load average. Model loading and export (made once, cached) are outside the timing.
Rows a warehouse would quarantine are counted here too, so the counts are an upper bound.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

# Run as `python bench/fit_texts.py`, this file's directory comes first on sys.path and
# bench/embeddings.py would shadow the embeddings package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from embeddings.backends import CHOICES, DEFAULT_BACKEND
from embeddings.options import TextConfig
from embeddings.text import item_texts, user_texts
from m2ctr.schema import WARM, cold_bucket


def read_raw(raw: Path):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    parts = sorted(raw.glob("part-*.csv")) if raw.is_dir() else [raw]
    if not parts:
        raise SystemExit(f"no part-*.csv under {raw}")
    parse = pcsv.ParseOptions(newlines_in_values=True)
    return pa.concat_tables(pcsv.read_csv(p, parse_options=parse) for p in parts)


def fit_texts(table) -> tuple[list[str], list[str]]:
    """(texts the text encoder sees, texts the sentence encoder sees), each distinct, non-empty."""
    import pandas as pd

    day = pd.to_datetime(pd.Series(table.column("log_time").to_pylist()), format="mixed").dt.normalize()
    texts = {"user": user_texts(table), "item": item_texts(table)}
    cold_texts = set()
    for side, side_texts in texts.items():
        ids = pd.Series(table.column(f"{side}_id").cast("string").to_pylist())
        per_day = pd.DataFrame({"id": ids, "day": day}).groupby(["id", "day"]).size().rename("n").reset_index()
        per_day["before"] = per_day.groupby("id")["n"].cumsum() - per_day["n"]  # impressions on earlier days
        before = pd.DataFrame({"id": ids, "day": day}).merge(per_day, on=["id", "day"], how="left")["before"]
        cold = cold_bucket(before.to_numpy()) != WARM
        cold_texts.update(t for t, c in zip(side_texts, cold) if c and t)
    every = {t for side in texts for t in texts[side] if t}
    return sorted(every), sorted(cold_texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, required=True, help="generated raw directory (part-*.csv)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=CHOICES,
                        help="encoder backend (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch / runtime threads (default %(default)s)")
    parser.add_argument("--only", choices=("text", "sentence"),
                        help="time one encoder only (two shorter runs instead of one long one)")
    parser.add_argument("--limit", type=int, help="encode only the first N texts of each list (a quick look)")
    args = parser.parse_args()

    import torch

    from embeddings.encoder import HFEncoder, SentenceEncoder

    torch.set_num_threads(args.threads)
    table = read_raw(args.raw)
    every, cold = fit_texts(table)
    print(f"{table.num_rows:,} rows: {len(every):,} distinct texts for the text encoder, "
          f"{len(cold):,} for the sentence encoder", flush=True)
    c = TextConfig.from_dict({"encoder_backend": args.backend, "device": "cpu"})
    encoders = {"text": lambda: HFEncoder.of(c), "sentence": lambda: SentenceEncoder.of(c)}
    total = 0.0
    for name, texts in (("text", every), ("sentence", cold)):
        if args.only and name != args.only:
            continue
        texts = texts[:args.limit] if args.limit else texts
        encoder = encoders[name]()
        encoder.encode(texts[:16])  # load, export or quantise outside the timing
        t0 = time.perf_counter()
        vectors = encoder.encode(texts)
        seconds = time.perf_counter() - t0
        total += seconds
        assert vectors.shape[0] == len(texts) and np.isfinite(vectors).all()
        print(f"{name} encoder: {len(texts):,} texts in {seconds:,.0f} s ({len(texts) / seconds:,.0f} texts/s)",
              flush=True)
    print(f"encoding{' (' + args.only + ' encoder)' if args.only else ' in all'}: {total / 60:.1f} min on {args.backend}, {args.threads} thread(s); "
          f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")


if __name__ == "__main__":
    main()
