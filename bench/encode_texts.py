"""The text side of `fit fusion` on a built training_samples table, counted or timed on its own.

    python bench/encode_texts.py count TABLE
    python bench/encode_texts.py encode TABLE --cache-dir DIR [--backend auto] [--threads 2]

  count   unique user and item texts of every day, as the featurizer keys them, and the distinct
          non-empty texts the encoders would read (cheap: no encoder)
  encode  what `fit fusion` does before training: fit the preprocessing and the text side on the
          training days, then add the validation and test texts. Every unique text goes through
          the text encoder, and the texts of rows whose user or item has zero or few impressions
          before the row's day through the sentence encoder; prints each encoder's count and
          seconds (models loaded, exported or quantised before the clock starts). An empty
          --cache-dir times every encode; a filled one times reading it.

Each prints its result as one JSON line on stdout, last; progress and rates go to stderr.
bench/scale.py runs both as child processes (its texts and encode steps).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as `python bench/encode_texts.py`, this directory comes first on sys.path, and
# bench/embeddings.py and bench/trainer.py would shadow the packages of the same names.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from embeddings.backends import CHOICES, DEFAULT_BACKEND


def count_texts(a: argparse.Namespace) -> int:
    """Unique user and item texts of every day, as the featurizer keys them."""
    import pyarrow.compute as pc

    from embeddings.keys import SIDES
    from embeddings.tables import key_fields, raw_keys
    from embeddings.text import TEXT_FIELDS, join_fields
    from m2ctr.schema import TEXT_COLUMNS
    from trainer.table import Table

    t = Table(a.table, need_text=True)
    keys = {side: set() for side in SIDES}
    for batch in t.batches(t.days, TEXT_COLUMNS):
        for side in SIDES:
            keys[side].update(pc.unique(raw_keys(batch, TEXT_FIELDS[side])).to_pylist())
    # what the encoders see: the joined text, empty texts skipped, both sides in one set
    distinct = {join_fields(key_fields(k)) for side in SIDES for k in keys[side]} - {""}
    print(json.dumps({"user": len(keys["user"]), "item": len(keys["item"]), "distinct": len(distinct),
                      "rows": t.count_rows(t.fragments(t.days))}))
    return 0


def encode_texts(a: argparse.Namespace) -> int:
    """The text side of `fit fusion`, timed on its own: every unique text of every day through the
    text encoder, and the texts of rows whose user or item has zero or few impressions before the
    row's day through the sentence encoder, as a fit does."""
    import torch

    from embeddings import TextFeaturizer
    from m2ctr.schema import TEXT_COLUMNS
    from trainer.config import FitConfig
    from trainer.prepare import content_config
    from trainer.preprocessing import Preprocessor
    from trainer.table import REQUIRED_COLUMNS, TEXT_FIT_COLUMNS, Table, history_bucket, split_days

    torch.set_num_threads(a.threads)
    cfg = FitConfig(model="fusion", table=a.table, threads=a.threads).with_content(
        cache_dir=a.cache_dir, encoder_backend=a.backend)
    t0 = time.perf_counter()
    table = Table(cfg.table, need_text=True)
    split = split_days(table.days, cfg.val_days, cfg.test_days)
    Preprocessor.fit(table.batches(split["train_days"], REQUIRED_COLUMNS), min_count=cfg.min_count,
                     max_vocab=cfg.max_vocab, hash_buckets=cfg.hash_buckets)
    f = TextFeaturizer(content_config(cfg, uses_text=True))
    encoders = {"text": f.vectors.encoder, "sentence": f.fallback.encoder}
    for cached in encoders.values():
        cached.encoder.encode(["load the model"])  # load, export or quantise outside the timing
    t1 = time.perf_counter()
    f.fit(table.batches(split["train_days"], TEXT_FIT_COLUMNS), lambda side, batch: history_bucket(batch, side))
    t2 = time.perf_counter()
    for batch in table.batches(split["val_days"] + split["test_days"], TEXT_COLUMNS):
        f.transform(batch)  # texts first seen on validation and test days are encoded here
    t3 = time.perf_counter()
    for name, cached in encoders.items():
        rate = cached.n_encoded / cached.encode_s if cached.encode_s else 0.0
        print(f"{name} encoder: {cached.n_encoded:,} texts in {cached.encode_s:,.1f} s ({rate:,.0f} texts/s), "
              f"{cached.n_cache_hits:,} from the cache", file=sys.stderr)
    print(f"backend {f.cfg.encoder_backend}, {a.threads} thread(s); encoding "
          f"{sum(c.encode_s for c in encoders.values()) / 60:.1f} min in all; load average "
          f"{os.getloadavg()[0]:.2f} (1 min) at the end", file=sys.stderr)
    print(json.dumps({
        "backend": f.cfg.encoder_backend,
        "unique": f.n_unique(),
        "encoded": {name: c.n_encoded for name, c in encoders.items()},
        "encode_s": {name: c.encode_s for name, c in encoders.items()},
        "cache_hits": {name: c.n_cache_hits for name, c in encoders.items()},
        "preprocess_s": t1 - t0, "fit_text_s": t2 - t1, "eval_texts_s": t3 - t2,
        "text_side_s": t3 - t1, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/encode_texts.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{count,encode}")
    count = sub.add_parser("count", help="unique user and item texts of every day (no encoder)",
                           description=count_texts.__doc__)
    count.add_argument("table", help="a training_samples table directory")
    count.set_defaults(run=count_texts)
    encode = sub.add_parser("encode", help="the text side of `fit fusion`, timed per encoder",
                            description=encode_texts.__doc__)
    encode.add_argument("table", help="a training_samples table directory")
    encode.add_argument("--cache-dir", required=True, help="text vector cache (an empty one times every encode)")
    encode.add_argument("--backend", default=DEFAULT_BACKEND, choices=CHOICES,
                        help="encoder backend (default %(default)s)")
    encode.add_argument("--threads", type=int, default=2, help="torch / runtime threads (default %(default)s)")
    encode.set_defaults(run=encode_texts)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    return a.run(a)


if __name__ == "__main__":
    sys.exit(main())
