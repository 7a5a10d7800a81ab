"""`trainer fit fusion` with some parts of its content side left out.

A model that uses text takes every content part (embeddings/options.py, PARTS); this fits fusion
without the ones named in --drop, everything else as `trainer fit` would, so the README can say
what each part is worth to fusion itself, in each language:

    python bench/fusion_parts.py --drop vectors fallback -- \
        --table data/warehouse-zh/m2ctr.db/training_samples --out runs/no-vectors-zh --seed 0 --epochs 4 --threads 1

Arguments after `--` go to `python -m trainer fit fusion` unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embeddings.options import PARTS
from trainer import prepare
from trainer.cli import main as trainer_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drop", nargs="+", choices=PARTS, required=True, help="content parts to leave out")
    parser.add_argument("fit_args", nargs=argparse.REMAINDER, help="-- then `trainer fit fusion` arguments")
    args = parser.parse_args(argv)
    drop = dict.fromkeys(args.drop, False)
    if "vectors" in drop:
        drop["fallback"] = False  # the fallback vectors are a kind of vectors: no fallback without them
    every_part = prepare.content_config
    prepare.content_config = lambda cfg, uses_text: every_part(cfg, uses_text).replace(**drop)
    fit_args = args.fit_args[1:] if args.fit_args[:1] == ["--"] else args.fit_args
    return trainer_main(["fit", "fusion", *fit_args])


if __name__ == "__main__":
    sys.exit(main())
