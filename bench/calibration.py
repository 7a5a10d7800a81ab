"""Per-scene calibration on finished runs: test ECE, NE and within-scene AUC before and after.

    python bench/calibration.py RUN_DIR [RUN_DIR ...] [--method auto] [--min-rows 1000]

For each run it reads the uncalibrated probabilities of its validation and test rows
(`probability_raw` of scores_*.parquet, or `probability` of a run written before calibration),
fits trainer.calibration on the validation rows exactly as `fit` does, and prints, for the test
rows overall and per scene with at least --min-rows rows: ECE, normalized entropy (against the
validation click rate, overall and per scene, as the baseline a run without the training rows at
hand can take) and the within-scene AUC, before and after, and the ECE floor: what perfectly
calibrated probabilities would show on that many rows; then the mean over the runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from trainer import calibration as C
from trainer import metrics as M


def load(run: Path, part: str, scenes: list) -> dict[str, np.ndarray]:
    t = pq.read_table(run / f"scores_{part}.parquet")
    col = "probability_raw" if "probability_raw" in t.column_names else "probability"
    scene = t.column("scene").to_numpy()
    return {"y": t.column("label").to_numpy().astype(np.float64), "p": t.column(col).to_numpy(),
            "scene": np.searchsorted(scenes, scene)}


def ece_floor(p: np.ndarray, draws: int = 20) -> float:
    """The ECE perfectly calibrated probabilities `p` would show on this many rows: the mean ECE of
    labels drawn from p itself (finite rows put the bins' observed rates off by chance)."""
    rng = np.random.default_rng(0)
    return float(np.mean([M.ece((rng.random(len(p)) < p).astype(np.float64), p) for _ in range(draws)]))


def one_run(run: Path, method: str, min_rows: int) -> dict:
    scenes = sorted(set(pq.read_table(run / "scores_val.parquet").column("scene").to_pylist()))
    val, test = load(run, "val", scenes), load(run, "test", scenes)
    cal = C.fit(method, val["y"], val["p"], val["scene"])
    q = cal(test["p"], test["scene"])
    out = {"method": cal.method, "slices": {}}
    for s in [None, *range(len(scenes))]:
        rows = np.ones(len(q), bool) if s is None else test["scene"] == s
        if s is not None and rows.sum() < min_rows:
            continue
        base = val["y"].mean() if s is None else val["y"][val["scene"] == s].mean()
        y = test["y"][rows]
        before = M.probability_quality(y, test["p"][rows], base)
        after = M.probability_quality(y, q[rows], base)
        out["slices"]["all" if s is None else str(scenes[s])] = {
            "n": int(rows.sum()), "ece": (before["ece"], after["ece"]), "ne": (before["ne"], after["ne"]),
            "ratio": (before["predicted_over_observed"], after["predicted_over_observed"]),
            "auc": (M.auc(y, test["p"][rows]), M.auc(y, q[rows])),
            "floor": ece_floor(q[rows])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--method", default="auto", choices=C.CHOICES)
    ap.add_argument("--min-rows", type=int, default=1000, help="smallest scene shown (default %(default)s)")
    args = ap.parse_args()
    results = [one_run(r, args.method, args.min_rows) for r in args.runs]
    for run, res in zip(args.runs, results):
        print(f"\n{run} ({res['method']})")
        print(f"  {'slice':<6} {'n':>7} {'ECE before':>11} {'after':>7} {'NE before':>10} {'after':>7} "
              f"{'pred/obs before':>16} {'after':>7} {'AUC before':>11} {'after':>7} {'ECE floor':>10}")
        for name, v in res["slices"].items():
            print(f"  {name:<6} {v['n']:>7} {v['ece'][0]:>11.4f} {v['ece'][1]:>7.4f} {v['ne'][0]:>10.4f} "
                  f"{v['ne'][1]:>7.4f} {v['ratio'][0]:>16.3f} {v['ratio'][1]:>7.3f} {v['auc'][0]:>11.4f} "
                  f"{v['auc'][1]:>7.4f} {v['floor']:>10.4f}")
    names = [n for n in results[0]["slices"] if all(n in r["slices"] for r in results)]
    print(f"\nmean over {len(results)} run(s)")
    for name in names:
        mean = {k: np.mean([r["slices"][name][k] for r in results], axis=0) for k in ("ece", "ne", "auc", "floor")}
        print(f"  {name:<6} ECE {mean['ece'][0]:.4f} -> {mean['ece'][1]:.4f}   NE {mean['ne'][0]:.4f} -> "
              f"{mean['ne'][1]:.4f}   AUC {mean['auc'][0]:.4f} -> {mean['auc'][1]:.4f}   ECE floor {mean['floor']:.4f}")


if __name__ == "__main__":
    main()
