"""Text that helps on the training days and stops helping after them: fusion against its backbone.

Two planted tables of one world (`synthetic.sample_table`, topic effects on every day, or on the
training days only) and `mmoe` and `fusion` fitted on each. A gated model should not lose to its own
backbone on the validation day when its text stops helping, and its alpha should fall:

    python bench/text_stops_helping.py --out /tmp/text-stops --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthetic.sample_table import write_sample_table

DAYS = 8  # 6 training days, then validation and test


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="tables and runs go here; finished runs are read back")
    ap.add_argument("--rows-per-day", type=int, default=4000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args(argv)
    print("table   model   val AUC           test AUC          mean alpha (val)")
    for name, topic_days in (("stays", None), ("stops", DAYS - 2)):
        table = args.out / name / "training_samples"
        if not table.exists():
            write_sample_table(table, rows_per_day=args.rows_per_day, days=DAYS, seed=3,
                               topic_effect=2.5, topic_affinity=2.0, topic_days=topic_days)
        for model in ("mmoe", "fusion"):
            runs = []
            for seed in args.seeds:
                out = args.out / name / f"{model}-seed{seed}"
                if not (out / "metrics.json").exists():
                    subprocess.run([sys.executable, "-m", "trainer", "fit", model, "--table", str(table),
                                    "--out", str(out), "--epochs", str(args.epochs), "--threads", "1",
                                    "--seed", str(seed), "--quiet"], check=True)
                runs.append(json.loads((out / "metrics.json").read_text()))

            def cell(values):
                values = [v for v in values if v is not None]
                if not values:
                    return "-".ljust(17)
                sd = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
                return f"{statistics.mean(values):.4f}{sd}".ljust(17)

            alpha = [r.get("extras", {}).get("val", {}).get("alpha", {}).get("mean") for r in runs]
            print(f"{name:7} {model:7} {cell([r['val']['auc'] for r in runs])} "
                  f"{cell([r['test']['auc'] for r in runs])} {cell(alpha)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
