"""`python -m trainer SUBCOMMAND ...`.

Subcommands live in `SUBCOMMANDS` (name -> (help, add_arguments, run)); adding
one is a function that declares its arguments, a function that runs it, and one
line in the table.
"""

from __future__ import annotations

import argparse
import json
import sys

from .data import TrainerError, default_table_path
from .ladder import add_ladder_arguments, run_ladder
from .models import MODELS


def _hparam(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_fit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", choices=list(MODELS), help="model to train")
    p.add_argument(
        "--table", default=str(default_table_path()),
        help="training_samples directory (ORC, date=YYYY-MM-DD partitions); "
        "default: $CTR_WAREHOUSE_DIR/m2ctr.db/training_samples (%(default)s)",
    )
    p.add_argument("--out", help="run directory to create (default: runs/<model>-<timestamp>)")
    p.add_argument("--epochs", type=_positive, default=5, help="maximum epochs (default %(default)s)")
    p.add_argument("--patience", type=_positive, default=2,
                   help="stop after this many epochs without a better validation AUC (default %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="seed for python, numpy and torch (default %(default)s)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto picks CUDA when available (default %(default)s)")
    p.add_argument("--threads", type=_positive, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--batch-size", type=_positive, default=1024, help="training batch size (default %(default)s)")
    p.add_argument("--eval-batch-size", type=_positive, default=8192, help="inference batch size (default %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=1e-5, help="AdamW weight decay (default %(default)s)")
    p.add_argument("--val-days", type=_positive, default=1, help="days before the test days used for validation (default %(default)s)")
    p.add_argument("--test-days", type=_positive, default=1, help="last days used for test (default %(default)s)")
    p.add_argument("--scene-weights", choices=["none", "balanced"], default="none",
                   help="reweight the loss by inverse scene frequency on the training days (default %(default)s)")
    p.add_argument("--min-count", type=_positive, default=2,
                   help="training-day impressions an id needs for its own embedding; rarer and unseen "
                   "ids share hash buckets (default %(default)s)")
    p.add_argument("--max-vocab", type=_positive, default=200_000, help="most frequent ids kept per field (default %(default)s)")
    p.add_argument("--hash-buckets", type=_positive, default=4096, help="shared buckets per id field (default %(default)s)")
    p.add_argument("--hp", type=_hparam, action="append", default=[], metavar="KEY=VALUE",
                   help="model hyperparameter, value parsed as JSON, e.g. --hp n_experts=8 "
                   "--hp expert_dims=[256,128] (repeatable)")
    p.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                   help="forward pass precision; bfloat16 autocast is ~1.5x faster on CPUs with "
                        "bf16 support, weights and evaluation stay float32 (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    text = p.add_argument_group("text (mmoe --text, fusion)")
    text.add_argument("--text", action="store_true", help="add whitened text vectors of user and item to the input")
    text.add_argument("--fallback", action="store_true",
                      help="also add fallback sentence vectors (on for models that use text)")
    text.add_argument("--text-model", metavar="NAME_OR_PATH", help="text encoder (default: the embeddings package's)")
    text.add_argument("--pooling", choices=["last4-mean", "first-last-avg"], default="last4-mean",
                      help="token pooling of the text encoder (default %(default)s)")
    text.add_argument("--whiten-dim", type=_positive, default=128, help="whitened vector width (default %(default)s)")
    text.add_argument("--sentence-model", metavar="NAME_OR_PATH", help="fallback sentence encoder (default: the embeddings package's)")
    text.add_argument("--cache-dir", default=".cache/text_vectors", help="text vector cache (default %(default)s)")


def run_fit(args) -> None:
    from .train import fit

    args.hp = dict(args.hp)
    fit(args)


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `fit`")
    p.add_argument("--table", help="training_samples directory (default: the one the run was fitted on)")


def run_evaluate(args) -> None:
    from .train import evaluate

    evaluate(args)


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `fit`")
    p.add_argument("--table", required=True, help="training_samples-shaped directory to score (every day in it)")
    p.add_argument("--out", required=True, help="Parquet file to write: impression_id, probability")


def run_predict(args) -> None:
    from .train import predict

    predict(args)


SUBCOMMANDS = {
    "fit": ("train a model on the time split and write a run directory", add_fit_arguments, run_fit),
    "evaluate": ("recompute validation and test metrics of a run from its saved artifacts",
                 add_evaluate_arguments, run_evaluate),
    "predict": ("write impression_id + click probability for every row of a table",
                add_predict_arguments, run_predict),
    "ladder": ("train every model rung on one split for several seeds; write ladder.md and ladder.json",
               add_ladder_arguments, run_ladder),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer", description="Train and evaluate multi-scene CTR models on training_samples."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except TrainerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
