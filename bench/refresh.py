"""Daily refresh against a full retrain, day by day: next-day AUC and wall time of each.

    python bench/refresh.py [--table DIR] [--model fusion] [--days 4] [--epochs 5] [--new-passes K]
                            [--replay-days N] [--replay recent|spread] [--keep-parent S] [--seeds 42 1 2]

For each of the last --days days D of the table, both see the table as it stood on D (its days up to
D; validation D-1, test D):
  full     `fit MODEL --epochs E` from scratch on every training day;
  refresh  `fit MODEL --init-from <yesterday's run>` on the new training day (read --new-passes
           times per epoch) plus --replay-days earlier days' worth of rows (--replay: the last
           days, or drawn from every earlier day), keeping --keep-parent of the weights it
           started from, with fit's refresh defaults unless
           --refresh-epochs / --refresh-lr say otherwise; the first refresh starts from the full
           fit of the day before the window.
Both run in this one process, one after the other, so they see the same machine load. With
several --seeds it also prints how far the full fits of different seeds are from each other on the
same day: a refresh's difference to one of them carries that spread too.
Without --table it writes a synthetic.sample_table (--rows-per-day x 10 days). The runs go to a
temporary directory, removed at the end unless --keep-runs is given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from trainer.cli import main as trainer
from trainer.config import REPLAYS, FitConfig

# the daily refresh's target: next-day AUC within this of a full retrain on the same days
WITHIN = 0.003


def table_as_of(table: Path, day: str, root: Path) -> Path:
    """The table's partitions up to `day`, linked into a directory of their own (made once, shared by
    every seed's chain)."""
    out = root / f"as-of-{day}"
    if out.is_dir():
        return out
    out.mkdir(parents=True)
    for part in sorted(table.glob("date=*")):
        if part.name.removeprefix("date=") <= day:
            (out / part.name).symlink_to(part.resolve(), target_is_directory=True)
    return out


def fit(args: list[str]) -> tuple[float, dict]:
    t0 = time.perf_counter()
    if trainer(["fit", *args]) != 0:
        raise SystemExit(f"error: fit {' '.join(args)} failed")
    out = Path(args[args.index("--out") + 1])
    return time.perf_counter() - t0, json.loads((out / "metrics.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", type=Path, help="training_samples directory (default: a sample table)")
    ap.add_argument("--rows-per-day", type=int, default=5000, help="sample table size (default %(default)s)")
    ap.add_argument("--model", default="fusion", help="model to fit (default %(default)s)")
    ap.add_argument("--days", type=int, default=4, help="days refreshed (default %(default)s)")
    ap.add_argument("--new-passes", type=int, default=FitConfig("dnn").new_passes,
                    help="times a refresh reads each new day per epoch (default: fit's, %(default)s)")
    ap.add_argument("--replay-days", type=int, default=FitConfig("dnn").replay_days,
                    help="earlier days a refresh replays (default: fit's, %(default)s)")
    ap.add_argument("--replay", default=FitConfig("dnn").replay, choices=REPLAYS,
                    help="which earlier rows a refresh replays (default: fit's, %(default)s)")
    ap.add_argument("--keep-parent", type=float, default=FitConfig("dnn").keep_parent,
                    help="share of its parent's weights a refresh keeps (default: fit's, %(default)s)")
    ap.add_argument("--epochs", type=int, default=FitConfig("dnn").epochs,
                    help="epochs of every full fit (default: fit's, %(default)s, early stopping as fit does)")
    ap.add_argument("--refresh-epochs", type=int, help="epochs of every refresh (default: fit's for a refresh)")
    ap.add_argument("--refresh-lr", type=float, help="learning rate of every refresh (default: fit's for a refresh)")
    ap.add_argument("--seeds", "--seed", type=int, nargs="+", default=[42],
                    help="seed of every fit; several run the whole chain once per seed (default %(default)s)")
    ap.add_argument("--cache-dir", type=Path, help="text vector cache of every fit (default: a new, empty one); "
                    "a warm one leaves encoding out of both legs' times")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default %(default)s)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--keep-runs", action="store_true", help="keep the runs and table views (their path is printed)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-refresh-"))
    try:
        run_bench(args, tmp)
    finally:
        if args.keep_runs:
            print(f"runs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run_bench(args, tmp: Path) -> None:
    table = args.table
    if table is None:
        from synthetic.sample_table import write_sample_table

        table = write_sample_table(tmp / "table", rows_per_day=args.rows_per_day, days=10, seed=1)
    days = sorted(p.name.removeprefix("date=") for p in table.glob("date=*"))
    if len(days) < args.days + 4:
        raise SystemExit(f"error: {len(days)} days in {table}; need --days + 4")
    refresh = FitConfig(args.model, init_from=".", epochs=args.refresh_epochs, lr=args.refresh_lr)
    load = os.getloadavg()[0]
    rows = []
    for seed in args.seeds:
        rows += chain(args, refresh, table, days, seed, tmp / f"seed-{seed}")

    print(f"\n{args.model}: full fit {args.epochs} epochs; refresh {refresh.epochs} epoch(s) at lr {refresh.lr:g}, "
          f"new days x{args.new_passes}, replay {args.replay_days} day(s), {args.replay}, "
          f"keep {args.keep_parent:g} of the parent; {args.threads} threads; "
          f"load average at start {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'seed':>5} {'test day':<11} {'full AUC':>9} {'refresh AUC':>12} {'diff':>8} {'val diff':>9} "
          f"{'full s':>7} {'refresh s':>10} {'time ratio':>11}")
    for r in rows:
        print(f"{r['seed']:>5} {r['day']:<11} {r['full_auc']:>9.4f} {r['refresh_auc']:>12.4f} "
              f"{r['refresh_auc'] - r['full_auc']:>+8.4f} {r['refresh_val_auc'] - r['full_val_auc']:>+9.4f} "
              f"{r['full_s']:>7.1f} {r['refresh_s']:>10.1f} {r['refresh_s'] / r['full_s']:>11.2f}")
    test = [r["refresh_auc"] - r["full_auc"] for r in rows]
    val = [r["refresh_val_auc"] - r["full_val_auc"] for r in rows]
    ratios = [r["refresh_s"] / r["full_s"] for r in rows]
    print(f"mean test diff {sum(test) / len(test):+.4f}, test days within {WITHIN}: "
          f"{sum(abs(d) <= WITHIN for d in test)} of {len(test)}, mean val diff {sum(val) / len(val):+.4f}, "
          f"time ratio {min(ratios):.2f}-{max(ratios):.2f}")
    floor = seed_spread(rows)
    if floor:
        print(f"for scale, full fits of different seeds on the same day: within {WITHIN} of each other on "
              f"{sum(d <= WITHIN for d in floor)} of {len(floor)} pairs, largest {max(floor):.4f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "load_average": load, **vars(args)}, default=str, indent=2))


def seed_spread(rows: list[dict]) -> list[float]:
    """|AUC difference| of every pair of full fits of one test day with different seeds: how far a
    full retrain is from another, which a refresh's difference to one of them also carries."""
    by_day: dict[str, list[float]] = {}
    for r in rows:
        by_day.setdefault(r["day"], []).append(r["full_auc"])
    return [abs(a - b) for aucs in by_day.values() for i, a in enumerate(aucs) for b in aucs[i + 1:]]


def chain(args, refresh: FitConfig, table: Path, days: list[str], seed: int, tmp: Path) -> list[dict]:
    """One seed's chain: the full fit of the day before the window, then per day a full fit and a
    refresh from the day before's refresh (the first from that full fit)."""
    common = ["--threads", str(args.threads), "--quiet", "--seed", str(seed),
              "--cache-dir", str(args.cache_dir or tmp.parent / "cache")]
    full_args = ["--epochs", str(args.epochs), *common]
    refresh_args = ["--epochs", str(refresh.epochs), "--lr", str(refresh.lr), "--new-passes", str(args.new_passes),
                    "--replay-days", str(args.replay_days), "--replay", args.replay,
                    "--keep-parent", str(args.keep_parent), *common]
    views = tmp.parent / "tables"
    start = days[-args.days - 1]
    fit([args.model, "--table", str(table_as_of(table, start, views)), "--out", str(tmp / f"full-{start}"), *full_args])
    previous = tmp / f"full-{start}"
    rows = []
    for day in days[-args.days:]:
        view = table_as_of(table, day, views)
        full_s, full = fit([args.model, "--table", str(view), "--out", str(tmp / f"full-{day}"), *full_args])
        ref_s, ref = fit([args.model, "--table", str(view), "--out", str(tmp / f"refresh-{day}"),
                          "--init-from", str(previous), *refresh_args])
        previous = tmp / f"refresh-{day}"
        rows.append({"seed": seed, "day": day, "full_auc": full["test"]["auc"], "refresh_auc": ref["test"]["auc"],
                     "full_val_auc": full["val"]["auc"], "refresh_val_auc": ref["val"]["auc"],
                     "full_s": full_s, "refresh_s": ref_s,
                     "full_train_rows": full["split"]["rows"]["train"],
                     "refresh_train_rows": ref["split"]["rows"]["train"]})
        print(f"seed {seed}, {day}: full AUC {full['test']['auc']:.4f} in {full_s:.0f} s; "
              f"refresh {ref['test']['auc']:.4f} in {ref_s:.0f} s", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
