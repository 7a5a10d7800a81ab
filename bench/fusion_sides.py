"""Each side of a fusion run alone, by cold-start bucket: what its alpha has to choose between.

A gate can only lean on the content side where the content side predicts better than the backbone.
For each user and item bucket (zero / few / warm training impressions, as in metrics.json) this
scores a finished run's rows three ways, before calibration: the backbone alone, the content tower
alone, and the fused model, and prints the bucket's mean alpha beside their AUC and logloss:

    python bench/fusion_sides.py runs/ladder-demo/runs/fusion-seed0 --part test
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m2ctr.schema import COLD_BUCKETS
from trainer import metrics as M
from trainer.batches import ordered_batches
from trainer.models.fusion import Fusion
from trainer.scoring import load_run, own_scene_logit, split_output, to_model
from trainer.table import Table

SIDES = ("backbone", "content", "fused")


@torch.inference_mode()
def side_scores(run, days: list[str]) -> dict[str, np.ndarray]:
    """Per row: label, cold buckets, alpha and each side's own-scene click probability."""
    model = run.model.eval()
    out: dict[str, list[np.ndarray]] = {}
    table = Table(run.cfg["table"], need_text=True)
    for arrays in ordered_batches(table, days, run.features, batch_size=run.cfg["config"]["eval_batch_size"]):
        batch = to_model(arrays, run.features, run.device)
        backbone, content, _ = model.sides(batch)
        fused, extras = split_output(model(batch))
        for name, logits in zip(SIDES, (backbone, content, fused)):
            out.setdefault(name, []).append(torch.sigmoid(own_scene_logit(logits, batch["scene"])).double().numpy())
        out.setdefault("alpha", []).append(extras["alpha"].double().numpy())
        for k in ("label", "cold_user", "cold_item"):
            out.setdefault(k, []).append(arrays[k])
    return {k: np.concatenate(v) for k, v in out.items()}


def table_by_bucket(rows: dict[str, np.ndarray]) -> str:
    head = "| side | bucket | n | mean alpha | " + " | ".join(f"{s} AUC" for s in SIDES) + " | " \
        + " | ".join(f"{s} logloss" for s in SIDES) + " |"
    lines = [head, "|" + "---|" * 2 + "---:|" * (2 + 2 * len(SIDES))]
    for side in ("cold_item", "cold_user"):
        for b, bucket in enumerate(COLD_BUCKETS):
            sel = rows[side] == b
            y = rows["label"][sel]
            aucs = [M.fmt(M.auc(y, rows[s][sel])) for s in SIDES]
            losses = [M.fmt(M.logloss(y, rows[s][sel])) for s in SIDES]
            alpha = f"{rows['alpha'][sel].mean():.3f}" if sel.any() else "-"
            lines.append(f"| {side.removeprefix('cold_')} | {bucket} | {int(sel.sum())} | {alpha} | "
                         + " | ".join(aucs + losses) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished fusion run directory")
    parser.add_argument("--part", choices=("val", "test"), default="test", help="days to score (default test)")
    args = parser.parse_args(argv)
    run = load_run(args.run, "cpu")
    if not isinstance(run.model, Fusion):
        parser.error(f"{args.run} is a {run.cfg['model']} run; only fusion has two sides and a gate")
    print(table_by_bucket(side_scores(run, run.cfg["split"][f"{args.part}_days"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
