"""`python -m trainer ladder`: what each part adds, on one time split, over several seeds.

Rungs: dnn, mmoe, ple, mmoe+text, mmoe+text+fallback, fusion. Every rung is an ordinary
`fit` run (same defaults, same split), written under `<out>/runs/<rung>-seed<S>/`; a run that
already finished is read back instead of trained again, so an interrupted ladder resumes.
Text is encoded once: all rungs share the vector cache (and, in this process, the loaded
encoder), so later text rungs only read vectors back.

`<out>/ladder.json` and `<out>/ladder.md` hold mean ± sample std over seeds of the test AUC:
overall, per scene, and per cold-start bucket (zero / few / warm users and items).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

from .data import COLD_NAMES, default_table_path

RUNGS = {
    "dnn": ["dnn"],
    "mmoe": ["mmoe"],
    "ple": ["ple"],
    "mmoe+text": ["mmoe", "--text"],
    "mmoe+text+fallback": ["mmoe", "--text", "--fallback"],
    "fusion": ["fusion"],
}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_ladder_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", default=str(default_table_path()),
                   help="training_samples directory (default: %(default)s)")
    p.add_argument("--seeds", type=_positive, default=3,
                   help="seeds per rung, 0..N-1 (default %(default)s)")
    p.add_argument("--out", help="ladder directory (default: runs/ladder-<timestamp>)")
    p.add_argument("--rungs", nargs="+", choices=list(RUNGS), default=list(RUNGS), metavar="RUNG",
                   help=f"subset of rungs to run, of: {', '.join(RUNGS)} (default: all)")
    # Passed through to every `fit` when given; fit's own defaults otherwise.
    p.add_argument("--epochs", type=_positive, help="maximum epochs per run (default: fit's)")
    p.add_argument("--batch-size", type=_positive, help="training batch size (default: fit's)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="(default: fit's)")
    p.add_argument("--threads", type=_positive, help="torch CPU threads (default: fit's)")
    p.add_argument("--cache-dir", help="text vector cache shared by the text rungs (default: fit's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


PASS_THROUGH = ("epochs", "batch_size", "device", "threads", "cache_dir")


def _fit_args(args) -> list[str]:
    out = []
    for name in PASS_THROUGH:
        value = getattr(args, name)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", str(value)]
    return out + (["--quiet"] if args.quiet else [])


def _fit_once(rung: str, seed: int, table: str, run_dir: Path, fit_args: list[str]) -> dict:
    if (run_dir / "metrics.json").is_file():
        return json.loads((run_dir / "metrics.json").read_text())
    from .cli import build_parser
    from .train import fit

    argv = ["fit", *RUNGS[rung], "--table", table, "--out", str(run_dir), "--seed", str(seed), *fit_args]
    args = build_parser().parse_args(argv)
    args.hp = dict(args.hp)
    fit(args)
    return json.loads((run_dir / "metrics.json").read_text())


def _slices(test: dict) -> dict[str, float | None]:
    """The ladder's columns of one run's test metrics, flattened."""
    out = {"auc": test["auc"]}
    out.update({f"scene {s}": v for s, v in sorted(test["per_scene_auc"].items())})
    for side in ("user", "item"):
        for name in COLD_NAMES:
            out[f"{side} {name}"] = test["cold_start"][side][name]["auc"]
    return out


def _mean_std(values: list[float | None]) -> dict:
    ok = [v for v in values if v is not None]  # a one-class slice has no AUC
    return {"mean": float(np.mean(ok)) if ok else None,
            "std": float(np.std(ok, ddof=1)) if len(ok) > 1 else None,
            "values": values}


def summarise(results: dict[str, list[dict]]) -> dict:
    """{rung: {column: {mean, std, values}}} from each rung's list of metrics.json."""
    table = {}
    for rung, runs in results.items():
        cols = [_slices(r["test"]) for r in runs]
        table[rung] = {c: _mean_std([row.get(c) for row in cols]) for c in cols[0]}
    return table


def _cell(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.4f}" + (f" ± {stat['std']:.4f}" if stat["std"] is not None else "")


def markdown(summary: dict, sizes: dict[str, int], seeds: list[int], table: str) -> str:
    columns = list(next(iter(summary.values())))
    lines = [
        "# Model ladder: test AUC",
        "",
        f"Table `{table}`, seeds {seeds}; mean ± sample std over seeds.",
        "Cold-start buckets count training-day impressions (zero 0, few 1-4, warm 5+).",
        "",
        "| rung | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for rung, stats in summary.items():
        lines.append(f"| {rung} | " + " | ".join(_cell(stats[c]) for c in columns) + " |")
    lines.append("| test rows | " + " | ".join(f"{sizes.get(c, '')}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _sizes(test: dict) -> dict[str, int]:
    out = {"auc": test["n"]}
    for side in ("user", "item"):
        for name in COLD_NAMES:
            out[f"{side} {name}"] = test["cold_start"][side][name]["n"]
    return out


def run_ladder(args) -> None:
    out = Path(args.out) if args.out else Path("runs") / f"ladder-{datetime.now():%Y%m%d-%H%M%S}"
    fit_args = _fit_args(args)
    seeds = list(range(args.seeds))
    jobs = [(rung, seed) for rung in args.rungs for seed in seeds]
    results: dict[str, list[dict]] = {rung: [] for rung in args.rungs}
    for k, (rung, seed) in enumerate(jobs, 1):
        print(f"[ladder {k}/{len(jobs)}] {rung} seed {seed}", file=sys.stderr)
        run_dir = out / "runs" / f"{rung}-seed{seed}"
        results[rung].append(_fit_once(rung, seed, args.table, run_dir, fit_args))

    summary = summarise(results)
    first = results[args.rungs[0]][0]
    doc = {"table": args.table, "seeds": seeds, "split": first["split"], "fit_args": fit_args,
           "rungs": {rung: RUNGS[rung] for rung in args.rungs},
           "test_rows": _sizes(first["test"]), "test_auc": summary}
    (out / "ladder.json").write_text(json.dumps(doc, indent=2) + "\n")
    text = markdown(summary, doc["test_rows"], seeds, args.table)
    (out / "ladder.md").write_text(text)
    print(f"ladder written to {out}", file=sys.stderr)
    print(text)
