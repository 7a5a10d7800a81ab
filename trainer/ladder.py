"""`python -m trainer ladder`: what each part adds, on one time split, over several seeds.

Every neural rung is an ordinary fit, its FitConfig derived from one base with `replace`, written
under `<out>/runs/<rung>-seed<S>/`; a run that already finished is read back instead of trained
again, so an interrupted ladder resumes. Peers stand beside them on the same table and split:
LightGBM on the same features (plain, and with TF-IDF/SVD text components), and the oracle (the
generator's true click probability) when the table comes with its truth. Text is encoded once:
all rungs share the vector cache.

`<out>/ladder.json` and `<out>/ladder.md` hold mean ± sample std over seeds of the test AUC:
overall, per scene, and per cold-start bucket (zero / few / warm users and items).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import numpy as np

from m2ctr.schema import COLD_BUCKETS, COLD_KEYS

from .artifacts import LadderDir, RunDir, warehouse_record
from .config import FitConfig
from .table import Table, split_days

ORACLE = "oracle"  # the peer that scores with the generator's true click probability: one run, no seed

# Neural rungs: the FitConfig fields each one changes. In order, each adds one part. Then the peers.
RUNGS = {
    "dnn": {"model": "dnn"},
    "mmoe": {"model": "mmoe"},
    "ple": {"model": "ple"},
    "dnn+tokens": {"model": "dnn", "content": {"tokens": True}},
    "mmoe+tokens": {"model": "mmoe", "content": {"tokens": True}},
    "mmoe+tokens+topics": {"model": "mmoe", "content": {"tokens": True, "topics": True}},
    "mmoe+tokens+topics+text": {"model": "mmoe", "content": {"tokens": True, "topics": True, "vectors": True}},
    "mmoe+tokens+topics+text+fallback": {"model": "mmoe", "content": {"tokens": True, "topics": True,
                                                                      "vectors": True, "fallback": True}},
    "fusion": {"model": "fusion"},  # the same content side, plus the gate
    "lightgbm": {"peer": "lightgbm"},
    "lightgbm+text": {"peer": "lightgbm", "text": True},
    "oracle": {"peer": ORACLE},
}


def rung_kind(change: dict) -> str:
    """'model' (a neural rung), 'peer' or 'oracle', from a rung's definition (an entry of RUNGS)."""
    peer = change.get("peer")
    if peer is None:
        return "model"
    return "oracle" if peer == ORACLE else "peer"


def _fit_once(base: FitConfig, rung: str, seed: int, run_dir: Path, split: dict, truth: Path | None) -> dict | None:
    run = RunDir(run_dir)
    if run.is_finished():
        return run.metrics()
    change = RUNGS[rung]
    if "peer" not in change:
        from .train import fit

        fit(base.replace(model=change["model"], seed=seed, out=str(run_dir))
            .with_content(**change.get("content", {})))
        return run.metrics()
    from . import peers

    if change["peer"] == ORACLE:
        return peers.oracle_metrics(base.table, split, truth) if truth else None
    return peers.fit_lightgbm(base.table, split, seed, text=change.get("text", False),
                              out_dir=run_dir, threads=base.threads)


def _cold_columns(test: dict, key: str) -> dict:
    """The `<side> <bucket>` columns of a part's cold-start slices: each slice's `auc` or `n`."""
    return {f"{side} {name}": test["cold_start"][side][name][key]
            for side in COLD_KEYS for name in COLD_BUCKETS}


def _slices(metrics: dict) -> dict[str, float | None]:
    """The ladder's columns of one run's metrics, flattened: test AUC overall, per scene and per
    cold-start bucket, validation AUC, and a gated model's mean test alpha per item bucket."""
    test = metrics["test"]
    out = {"auc": test["auc"]}
    out.update({f"scene {s}": v for s, v in sorted(test["per_scene_auc"].items())})
    out.update(_cold_columns(test, "auc"))
    out["val auc"] = metrics.get("val", {}).get("auc")
    alpha = metrics.get("extras", {}).get("test", {}).get("alpha")
    if alpha:
        out.update({f"alpha item {name}": alpha[COLD_KEYS["item"]].get(name) for name in COLD_BUCKETS})
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
        cols = [_slices(r) for r in runs]
        table[rung] = {c: _mean_std([row.get(c) for row in cols]) for c in cols[0]}
    return table


def _cell(stat: dict) -> str:
    if stat["mean"] is None:
        return "n/a"
    return f"{stat['mean']:.4f}" + (f" ± {stat['std']:.4f}" if stat["std"] is not None else "")


def markdown(summary: dict, sizes: dict[str, int], seeds: list[int], table: str) -> str:
    columns = list(dict.fromkeys(c for stats in summary.values() for c in stats))
    lines = [
        "# Model ladder: test AUC",
        "",
        f"Table `{table}`, seeds {seeds}; mean ± sample std over seeds (the oracle has no seed).",
        "Cold-start buckets count training-day impressions (zero 0, few 1-4, warm 5+); alpha is a gated",
        "model's mean test alpha per item bucket.",
        "",
        "| rung | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for rung, stats in summary.items():
        lines.append(f"| {rung} | " + " | ".join(_cell(stats[c]) if c in stats else "" for c in columns) + " |")
    lines.append("| test rows | " + " | ".join(f"{sizes.get(c, '')}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _sizes(test: dict) -> dict[str, int]:
    return {"auc": test["n"], **_cold_columns(test, "n")}


def run_ladder(base: FitConfig, rungs: list[str], n_seeds: int, out: str | None, truth: str | None) -> Path:
    from . import peers

    out = Path(out) if out else Path("runs") / f"ladder-{datetime.now():%Y%m%d-%H%M%S}"
    ladder = LadderDir(out)
    split = split_days(Table(base.table).days, base.val_days, base.test_days)
    truth_path = Path(truth) if truth else peers.find_truth(base.table)
    seeds = list(range(n_seeds))
    jobs = [(rung, seed) for rung in rungs
            for seed in (seeds if rung_kind(RUNGS[rung]) != "oracle" else [0])]
    results: dict[str, list[dict]] = {rung: [] for rung in rungs}
    for k, (rung, seed) in enumerate(jobs, 1):
        print(f"[ladder {k}/{len(jobs)}] {rung} seed {seed}", file=sys.stderr)
        metrics = _fit_once(base, rung, seed, ladder.run_path(rung, seed), split, truth_path)
        if metrics is not None:
            results[rung].append(metrics)
    results = {rung: runs for rung, runs in results.items() if runs}
    if not results:
        raise SystemExit("ladder: no rung produced metrics")
    summary = summarise(results)
    first = next(iter(results.values()))[0]
    doc = {"table": base.table, "warehouse": warehouse_record(base.table), "seeds": seeds, "split": split, "base": base.to_dict(),
           "rungs": {rung: RUNGS[rung] for rung in results},
           "test_rows": _sizes(first["test"]), "test_auc": summary}
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(summary, doc["test_rows"], seeds, base.table)
    ladder.write_summary(doc, text)
    print(f"ladder written to {out}", file=sys.stderr)
    print(text)
    return out
