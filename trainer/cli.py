"""`python -m trainer SUBCOMMAND ...`.

Subcommands live in `SUBCOMMANDS` (name -> (help, add_arguments, run)); adding one is a function
that declares its arguments, a function that runs it, and one line in the table. `fit` turns its
arguments into a FitConfig here; nothing below this module sees argparse.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from embeddings.options import PARTS, TextConfig, cli_options, flag_name
from m2ctr.argtypes import fraction, positive
from serving.server import HELP as SERVE_HELP
from serving.server import add_serve_arguments, run_serve

from .calibration import CHOICES as CALIBRATIONS
from .config import FULL_FIT, REFRESH, REPLAYS, FitConfig, default
from .models import MODELS
from .table import TrainerError


def _hparam(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return text == "on"


def share_or_on_off(text: str) -> float:
    if text in ("on", "off"):
        return float(on_off(text))
    return fraction(text)


def add_cold_start_arguments(p: argparse.ArgumentParser) -> None:
    from .models import MODELS

    defaults = "; ".join(f"{name}: {cls.cold_start}" for name, cls in MODELS.items() if hasattr(cls, "cold_start"))
    g = p.add_argument_group(
        "cold-start simulation (training batches only; default: the model's own, "
        f"{defaults}; 0 for the others)")
    g.add_argument("--cold-user", type=fraction, metavar="P",
                   help="share of training rows whose user is shown as new (new-id row, no-history bucket)")
    g.add_argument("--cold-item", type=fraction, metavar="P", help="the same for the item")
    g.add_argument("--cold-mask-history", type=share_or_on_off, metavar="P|on|off",
                   help="share of the simulated rows whose side also shows no history (cold bucket and "
                        "history features as on its first day); on = 1, off = 0")


def add_fit_arguments(p: argparse.ArgumentParser) -> None:
    def opt(name: str, help: str, **kw):
        p_ = kw.pop("group", p)
        if kw.get("action") != "store_true":
            kw.setdefault("default", default(name))
            help += " (default %(default)s)"
        p_.add_argument(f"--{name.replace('_', '-')}", help=help, **kw)

    p.add_argument("model", choices=list(MODELS), help="model to train")
    opt("table", "training_samples directory (ORC, date=YYYY-MM-DD partitions); "
        "default: $CTR_WAREHOUSE_DIR/$CTR_SCHEMA.db/training_samples", metavar="DIR")
    p.add_argument("--out", help="run directory to create (default: runs/<model>-<timestamp>)")
    p.add_argument("--epochs", type=positive, help=f"maximum epochs (default {FULL_FIT['epochs']}; "
                   f"{REFRESH['epochs']} for a refresh, --init-from)")
    opt("patience", "stop after this many epochs without a better validation AUC", type=positive)
    opt("seed", "seed for python, numpy and torch", type=int)
    opt("device", "auto picks CUDA when available", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=positive, help="torch CPU threads (default: torch's own choice)")
    opt("batch_size", "training batch size", type=positive)
    opt("eval_batch_size", "inference batch size", type=positive)
    p.add_argument("--lr", type=float, help=f"AdamW learning rate of the dense layers (default {FULL_FIT['lr']:g}; "
                   f"{REFRESH['lr']:g} for a refresh, --init-from)")
    opt("emb_lr", "learning rate of the id tables (sparse Adam)", type=float)
    opt("token_lr", "learning rate of the content-id (token) table (sparse Adam)", type=float)
    opt("lr_decay", "every learning rate is multiplied by this after each epoch", type=float)
    opt("weight_decay", "AdamW weight decay of the dense layers", type=float)
    opt("val_days", "days before the test days used for validation", type=positive)
    opt("test_days", "last days used for test", type=positive)
    opt("scene_weights", "reweight the loss by inverse scene frequency on the training days",
        choices=["none", "balanced"])
    opt("calibration", "per-scene map of the probabilities fitted on the validation days; auto picks "
        "platt or isotonic by out-of-fold validation logloss; platt's pull toward the identity map is "
        "chosen the same way (a refresh keeps its parent's pick and refits the maps)",
        choices=list(CALIBRATIONS))
    opt("min_count", "training-day impressions an id needs for its own embedding; rarer and unseen "
        "ids share hash buckets", type=positive)
    opt("max_vocab", "most frequent ids kept per field", type=positive)
    opt("hash_buckets", "shared buckets per id field", type=positive)
    opt("shuffle_buffer", "training rows shuffled together; memory grows with it, not with the table",
        type=positive)
    p.add_argument("--hp", type=_hparam, action="append", default=[], metavar="KEY=VALUE",
                   help="model hyperparameter, value parsed as JSON, e.g. --hp n_experts=8 "
                   "--hp expert_dims=[256,128] (repeatable)")
    opt("init_from", "daily refresh: start from this run's weights, Adam moments, preprocessing and content side and "
        "train on the training days after its own (their ids join the counts, and ids that reach "
        "--min-count get their own id row, started from the row they read before)", metavar="RUN_DIR")
    opt("new_passes", "with --init-from, read each new training day this many times per epoch", type=positive)
    opt("replay_days", "with --init-from, also train on as many rows as this many earlier training days hold",
        type=int)
    opt("replay", "which earlier rows: recent, the earlier run's last --replay-days training days; spread, "
        "the same number of rows drawn evenly from every earlier training day of the table (a new draw "
        "each epoch)", choices=REPLAYS)
    opt("keep_parent", "with --init-from, the share of the earlier run's weights kept: at each epoch's end "
        "the weights move back this share of the way to the earlier run's (0: plain fine-tuning)", type=float)
    opt("precision", "forward pass precision; bfloat16 autocast is ~1.5x faster on CPUs with bf16 "
        "support, weights and evaluation stay float32", choices=["float32", "bfloat16"])
    opt("quiet", "no progress bars or per-epoch lines", action="store_true")
    opt("report", "write report.html into the run directory at the end", action="store_true")
    add_content_arguments(p)
    add_cold_start_arguments(p)


def add_content_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per content option, generated from its declaration (embeddings/options.py)."""
    flags = ", ".join(f"--{flag_name(f)}" for f in cli_options() if f.name in PARTS)
    g = p.add_argument_group(f"content (on for fusion; {flags} add it to dnn, mmoe, ple)")
    for f in cli_options():
        kw = {"dest": f"content.{f.name}", "help": f.metadata["help"]}
        if f.type in ("bool", bool):
            kw["action"] = "store_true"
        else:
            kw["default"] = default(f.name)
            if kw["default"] is not None:  # a None default is told in the help itself
                kw["help"] += " (default %(default)s)"
            if f.type in ("int", int):
                kw["type"] = positive
            if f.metadata.get("choices"):
                kw["choices"] = list(f.metadata["choices"])
            else:
                kw["metavar"] = f.metadata.get("metavar") or flag_name(f).upper()
        g.add_argument(f"--{flag_name(f).replace('_', '-')}", **kw)


def fit_config(args: argparse.Namespace) -> FitConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(FitConfig) if hasattr(args, f.name)}
    values["hp"] = dict(args.hp)
    values["content"] = TextConfig.asked_for(**{f.name: getattr(args, f"content.{f.name}") for f in cli_options()})
    return FitConfig(**values)


def run_fit(args) -> None:
    from .train import fit

    cfg = fit_config(args)
    out = fit(cfg)
    if cfg.report:
        from .report import write_report

        print(f"report: {write_report(out)}", file=sys.stderr)


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `fit`")
    p.add_argument("--table", help="training_samples directory (default: the one the run was fitted on)")


def run_evaluate(args) -> None:
    from .train import evaluate

    evaluate(args.run_dir, args.table)


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `fit`")
    p.add_argument("--table", required=True, help="training_samples-shaped directory to score (every day in it)")
    p.add_argument("--out", required=True, help="Parquet file to write: impression_id, probability")


def run_predict(args) -> None:
    from .scoring import predict

    predict(args.run_dir, args.table, args.out)


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `fit`")
    p.add_argument("--out", required=True, help="directory to create: model.onnx and manifest.json")


def run_export(args) -> None:
    from .export import export

    print(export(args.run_dir, args.out))


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="RUN_DIR|LADDER_DIR", help="a run directory or a ladder directory")


def run_report(args) -> None:
    from .report import write_report

    print(write_report(args.path))


def add_ladder_arguments(p: argparse.ArgumentParser) -> None:
    from .ladder import RUNGS

    p.add_argument("--table", default=default("table"), help="training_samples directory (default: %(default)s)")
    p.add_argument("--seeds", type=positive, default=3, help="seeds per rung, 0..N-1 (default %(default)s)")
    p.add_argument("--out", help="ladder directory (default: runs/ladder-<timestamp>)")
    p.add_argument("--rungs", nargs="+", choices=list(RUNGS), default=list(RUNGS), metavar="RUNG",
                   help=f"subset of rungs to run, of: {', '.join(RUNGS)} (default: all)")
    p.add_argument("--truth", help="the generator's truth.parquet, for the oracle row (default: "
                   "$CTR_RAW_PATH/truth.parquet, else raw/truth.parquet beside the warehouse, when there)")
    # Passed through to every fit when given; FitConfig's own defaults otherwise.
    p.add_argument("--epochs", type=positive, help="maximum epochs per run (default: fit's)")
    p.add_argument("--batch-size", type=positive, help="training batch size (default: fit's)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="(default: fit's)")
    p.add_argument("--threads", type=positive, help="torch CPU threads (default: fit's)")
    p.add_argument("--cache-dir", help="text vector cache shared by the text rungs (default: fit's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


LADDER_PASS_THROUGH = ("epochs", "batch_size", "device", "threads")


def run_ladder(args) -> None:
    from .ladder import run_ladder as ladder

    base = FitConfig(model="dnn", table=args.table, quiet=args.quiet,
                     **{k: getattr(args, k) for k in LADDER_PASS_THROUGH if getattr(args, k) is not None})
    if args.cache_dir is not None:
        base = base.with_content(cache_dir=args.cache_dir)
    ladder(base, args.rungs, args.seeds, args.out, args.truth)


SUBCOMMANDS = {
    "fit": ("train a model on the time split and write a run directory", add_fit_arguments, run_fit),
    "evaluate": ("recompute validation and test metrics of a run from its saved artifacts",
                 add_evaluate_arguments, run_evaluate),
    "predict": ("write impression_id + click probability for every row of a table",
                add_predict_arguments, run_predict),
    "export": ("write the run's scoring graph as ONNX and a manifest of its inputs",
               add_export_arguments, run_export),
    "report": ("write report.html (plots, calibration, cold start) beside a run or a ladder",
               add_report_arguments, run_report),
    "serve": (SERVE_HELP, add_serve_arguments, run_serve),  # serving/ is its own stage; kept as an alias
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
