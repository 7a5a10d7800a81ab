"""Text encoding throughput: rows/s with and without de-duplication, and with a warm cache.

    python bench/embeddings.py [--rows 200000] [--raw DIR] [--sample 2000]

Reads the user and item texts of the generator's CSV logs (`python -m synthetic generate`,
run into a temporary directory unless --raw names existing logs), builds the two texts of
every row, then encodes them with the default encoder three ways:

  no dedup    every row's texts through the model, measured on the first --sample rows
              and extrapolated to all rows (the full run would take far too long on a CPU)
  dedup       CachedEncoder with an empty cache: each unique text once, written to Parquet
  warm cache  a fresh CachedEncoder on the same cache directory: nothing is encoded

and prints one table. Model loading is excluded; text building is shown on its own line.
"""

from __future__ import annotations

import argparse
import glob
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv

# Run as `python bench/embeddings.py`, this file's directory comes first on sys.path and the
# file's name would shadow the embeddings package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from embeddings.cache import CachedEncoder
from embeddings.encoder import HFEncoder
from embeddings.text import item_texts, user_texts
from m2ctr.schema import TEXT_COLUMNS
from synthetic.generate import BASE_COLUMNS, DEEP_COLUMNS

RAW_COLUMNS = BASE_COLUMNS + DEEP_COLUMNS


def read_texts(raw: Path) -> pa.Table:
    """The five text columns of every parseable record of the CSV parts (header or not)."""
    tables = []
    for path in sorted(glob.glob(str(raw / "*.csv"))):
        with open(path, encoding="utf-8") as f:
            has_header = f.readline().startswith("user_id,")
        read = pcsv.ReadOptions(column_names=None if has_header else RAW_COLUMNS)
        parse = pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=lambda row: "skip")
        convert = pcsv.ConvertOptions(include_columns=list(TEXT_COLUMNS),
                                      column_types={c: pa.string() for c in TEXT_COLUMNS})
        tables.append(pcsv.read_csv(path, read_options=read, parse_options=parse,
                                    convert_options=convert))
    if not tables:
        raise SystemExit(f"error: no *.csv files in {raw}")
    return pa.concat_tables(tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows to generate (default %(default)s)")
    parser.add_argument("--raw", type=Path, help="existing CSV logs to read instead of generating")
    parser.add_argument("--sample", type=int, default=2000,
                        help="rows encoded without dedup, then extrapolated (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128, help="encoder batch (default %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=64, help="token limit (default %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-emb-") as tmp:
        raw = args.raw
        if raw is None:
            raw = Path(tmp) / "raw"
            subprocess.run([sys.executable, "-m", "synthetic", "generate", "--rows", str(args.rows),
                            "--out", str(raw), "--quiet"], check=True)
        table = read_texts(raw)
        rows = table.num_rows

        t0 = time.perf_counter()
        users, items = user_texts(table), item_texts(table)
        build_s = time.perf_counter() - t0
        texts = [t for t in (*users, *items) if t]

        encoder = HFEncoder(pooling="last4-mean", max_tokens=args.max_tokens,
                            batch_size=args.batch_size, device=args.device)
        encoder.encode(texts[:8])  # load the weights outside the timings

        # both texts of the first --sample rows, so the sample has the real user/item mix
        sample = [t for t in (*users[: args.sample], *items[: args.sample]) if t]
        t0 = time.perf_counter()
        encoder.encode(sample)
        sample_s = time.perf_counter() - t0
        per_text = sample_s / len(sample)

        cache_dir = Path(tmp) / "cache"
        cold = CachedEncoder(encoder, cache_dir)
        t0 = time.perf_counter()
        cold.vectors(texts)
        cold_s = time.perf_counter() - t0

        warm = CachedEncoder(encoder, cache_dir)
        t0 = time.perf_counter()
        warm.vectors(texts)
        warm_s = time.perf_counter() - t0

    full_s = per_text * len(texts)
    lines = [
        ("build texts", len(texts), 0, build_s, "normalise + join, both sides"),
        ("no dedup", len(texts), len(texts), full_s,
         f"extrapolated from {len(sample):,} texts in {sample_s:.1f} s"),
        ("dedup, cold cache", len(texts), cold.n_encoded, cold_s, "each unique text once"),
        ("warm cache", len(texts), warm.n_encoded, warm_s, f"{warm.n_cache_hits:,} read back"),
    ]
    print(f"\nrows {rows:,}  texts {len(texts):,} (user + item, non-empty)  "
          f"unique {cold.n_encoded:,}  device {encoder.device}  batch {args.batch_size}  "
          f"max tokens {args.max_tokens}\n")
    print(f"| {'mode':<18} | {'texts':>9} | {'encoded':>9} | {'seconds':>9} | {'rows/s':>11} | note")
    print(f"|{'-' * 20}|{'-' * 11}:|{'-' * 11}:|{'-' * 11}:|{'-' * 13}:|-----")
    for mode, n_texts, encoded, seconds, note in lines:
        print(f"| {mode:<18} | {n_texts:>9,} | {encoded:>9,} | {seconds:>9.1f} | "
              f"{rows / max(seconds, 1e-9):>11,.0f} | {note}")


if __name__ == "__main__":
    main()
