"""Training throughput and AUC: our MMoE / PLE against torch-rechub's, same data and sizes.

    python bench/trainer.py [--table DIR] [--rows-per-day N] [--epochs E] [--threads T ...]
                            [--rechub-fused] [--ours-bf16]

Both implementations get the same preprocessed arrays (trainer.table: time
split; trainer.preprocessing: train-only scalers and id vocabularies), the same
id embedding width, experts, hidden units, towers, batch size, learning rate,
seed, thread count, batches (the training set shuffled once per epoch, then
sliced) and masked loss (each row's own scene). Each side keeps its own
optimiser setup: ours the trainer's (`trainer.loop.Optimizers`: sparse embedding
gradients and SparseAdam for the id table, fused AdamW for the rest),
torch-rechub one AdamW with default options over all its parameters
(`--rechub-fused` gives it the fused AdamW kernel too). torch-rechub is fed the
way its docs use it: one SparseFeature per id field and the dense block as one
DenseFeature of the full width. Both train in float32 unless `--ours-bf16` (the
trainer's `precision="bfloat16"`: autocast matmuls).

The two take training steps in turn, so both see the same background load.
Throughput counts the whole training step (batch slicing, forward, backward,
optimiser step) plus each epoch's shuffle; test AUC is taken after the epoch
with the best validation AUC. Without --table the data is synthetic.sample_table's
generated table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthetic.sample_table import write_sample_table
from trainer import metrics as M
from trainer.batches import Features, ordered_batches
from trainer.loop import Optimizers, masked_bce
from trainer.models import MODELS
from trainer.preprocessing import Preprocessor
from trainer.table import REQUIRED_COLUMNS, Table, split_days


def load_data(table_path: str | None, rows_per_day: int, days: int, seed: int):
    if table_path is None:
        table_path = write_sample_table(Path(tempfile.mkdtemp(prefix="bench-trainer-")) / "ts",
                                        rows_per_day=rows_per_day, days=days, seed=seed)
    table = Table(table_path)
    split = split_days(table.days, 1, 1)
    prep = Preprocessor.fit(table.batches(split["train_days"], REQUIRED_COLUMNS))
    features = Features(prep)
    data = {}
    for p in ("train", "val", "test"):
        parts = list(ordered_batches(table, split[f"{p}_days"], features))
        data[p] = {k: np.concatenate([b[k] for b in parts]) for k in parts[0]}
    spec = {"n_dense": prep.n_dense, "id_fields": ["user_id", "item_id"],
            "id_cardinalities": prep.id_cardinalities, "n_scenes": len(prep.scenes), "blocks": {}}
    return data, spec


# ---------------------------------------------------------------------------- the two sides


class Ours:
    def __init__(self, kind, spec, a):
        hp = {"emb_dim": a.emb_dim, "expert_dims": a.expert_dims, "tower_dims": a.tower_dims}
        if kind == "mmoe":
            hp["n_experts"] = a.experts
        else:
            hp.update(n_levels=a.levels, n_specific=a.specific, n_shared=a.shared)
        self.model = MODELS[kind](spec, **hp)
        self.bf16 = a.ours_bf16

    def optimizer(self, a):
        return Optimizers(self.model, a.lr, a.lr, weight_decay=0.01)  # AdamW's default decay, as rechub's

    def batch(self, t, rows):
        return {k: t[k][rows] for k in ("ids", "dense", "scene", "label")}

    def loss(self, b):
        # --ours-bf16: matmuls in bfloat16 under autocast (weights, optimiser and eval stay float32)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(b)
        return masked_bce(logits.float(), b["scene"], b["label"])

    def probs(self, b):
        return torch.sigmoid(self.model(b).gather(1, b["scene"][:, None]).squeeze(1))


class Rechub:
    def __init__(self, kind, spec, a):
        from torch_rechub.basic.features import DenseFeature, SparseFeature
        from torch_rechub.models.multi_task import MMOE, PLE

        feats = [SparseFeature(f, vocab_size=c, embed_dim=a.emb_dim)
                 for f, c in zip(spec["id_fields"], spec["id_cardinalities"])]
        feats.append(DenseFeature("dense", embed_dim=spec["n_dense"]))
        tasks = ["classification"] * spec["n_scenes"]
        towers = [{"dims": a.tower_dims}] * spec["n_scenes"]
        experts = {"dims": a.expert_dims}
        if kind == "mmoe":
            self.model = MMOE(feats, tasks, a.experts, experts, towers)
        else:
            self.model = PLE(feats, tasks, a.levels, a.specific, a.shared, experts, towers)

    def optimizer(self, a):
        return torch.optim.AdamW(self.model.parameters(), lr=a.lr, fused=a.rechub_fused or None)

    def batch(self, t, rows):
        ids = t["ids"][rows]
        return {"user_id": ids[:, 0], "item_id": ids[:, 1], "dense": t["dense"][rows],
                "scene": t["scene"][rows], "label": t["label"][rows]}

    def _own(self, b):  # rechub's towers end in a sigmoid: [B, n_scenes] probabilities
        return self.model(b).gather(1, b["scene"][:, None]).squeeze(1)

    def loss(self, b):
        return F.binary_cross_entropy(self._own(b).clamp(1e-7, 1 - 1e-7), b["label"])

    def probs(self, b):
        return self._own(b)


# ---------------------------------------------------------------------------- measuring


def step(side, opt, batch) -> float:
    t0 = time.perf_counter()
    loss = side.loss(batch)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


@torch.inference_mode()
def eval_auc(side, t, y) -> float:
    side.model.eval()
    n = len(y)
    p = torch.cat([side.probs(side.batch(t, slice(s, s + 8192))) for s in range(0, n, 8192)])
    return M.auc(y, p.double().numpy())


def compare(kind, data, spec, a, threads) -> list[dict]:
    torch.set_num_threads(threads)
    train = {k: torch.from_numpy(v) for k, v in data["train"].items() if v.dtype != object}
    evals = {p: {k: torch.from_numpy(v) for k, v in data[p].items() if v.dtype != object} for p in ("val", "test")}
    sides = {}
    for name, cls in (("ours", Ours), ("torch-rechub", Rechub)):
        torch.manual_seed(a.seed)
        side = cls(kind, spec, a)
        sides[name] = {"side": side, "opt": side.optimizer(a), "gen": torch.Generator().manual_seed(a.seed),
                       "rows": 0, "secs": 0.0, "best_val": -1.0, "test_auc": None}
    n, bs = len(train["label"]), a.batch_size
    for epoch in range(a.epochs):
        for s in sides.values():
            s["side"].model.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=s["gen"])
            s["shuffled"] = {k: v[perm] for k, v in train.items()}
            s["secs"] += time.perf_counter() - t0
        # the two take steps in turn (order swapped every step), so both see the same load
        for i, start in enumerate(range(0, n - bs + 1, bs)):  # full batches (rechub's BatchNorm)
            for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
                s = sides[name]
                t0 = time.perf_counter()
                batch = s["side"].batch(s["shuffled"], slice(start, start + bs))
                s["secs"] += time.perf_counter() - t0 + step(s["side"], s["opt"], batch)
                s["rows"] += bs
        for s in sides.values():  # the epoch with the best validation AUC gives the test AUC
            val_auc = eval_auc(s["side"], evals["val"], data["val"]["label"])
            if val_auc > s["best_val"]:
                s["best_val"] = val_auc
                s["test_auc"] = eval_auc(s["side"], evals["test"], data["test"]["label"])
    out = []
    for name, s in sides.items():
        out.append({"model": kind, "impl": name, "threads": threads,
                    "params": sum(p.numel() for p in s["side"].model.parameters()),
                    "samples_s": s["rows"] / s["secs"], "test_auc": s["test_auc"]})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", help="training_samples directory (default: a generated table)")
    p.add_argument("--rows-per-day", type=int, default=20_000, help="generated table size (default %(default)s)")
    p.add_argument("--days", type=int, default=6, help="generated table days (default %(default)s)")
    p.add_argument("--models", nargs="+", choices=["mmoe", "ple"], default=["mmoe", "ple"])
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="torch CPU threads, each measured (default 1)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs per implementation (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--emb-dim", type=int, default=16)
    p.add_argument("--experts", type=int, default=4, help="MMoE experts (default %(default)s)")
    p.add_argument("--levels", type=int, default=1, help="PLE extraction layers (default %(default)s)")
    p.add_argument("--specific", type=int, default=1, help="PLE experts per scene (default %(default)s)")
    p.add_argument("--shared", type=int, default=2, help="PLE shared experts (default %(default)s)")
    p.add_argument("--expert-dims", type=int, nargs="+", default=[128, 64])
    p.add_argument("--tower-dims", type=int, nargs="+", default=[32])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rechub-fused", action="store_true", help="give torch-rechub's AdamW the fused kernel too")
    p.add_argument("--ours-bf16", action="store_true",
                   help="train ours with bfloat16 autocast on CPU (not the trainer's default; rechub stays float32)")
    a = p.parse_args()

    data, spec = load_data(a.table, a.rows_per_day, a.days, a.seed)
    print(f"train rows {len(data['train']['label']):,}, test rows {len(data['test']['label']):,}, "
          f"{spec['n_scenes']} scenes, {spec['n_dense']} dense, batch {a.batch_size}, "
          f"experts {a.expert_dims} towers {a.tower_dims}, epochs {a.epochs}", flush=True)
    rows = []
    for threads in a.threads:
        for kind in a.models:
            rows += compare(kind, data, spec, a, threads)
    print(f"\n{'model':<6} {'impl':<13} {'threads':>7} {'params':>9} {'samples/s':>10} {'test AUC':>9} {'speedup':>8}")
    for r in rows:
        ref = next(x for x in rows if x["model"] == r["model"] and x["threads"] == r["threads"]
                   and x["impl"] == "torch-rechub")
        print(f"{r['model']:<6} {r['impl']:<13} {r['threads']:>7} {r['params']:>9,} {r['samples_s']:>10,.0f} "
              f"{r['test_auc']:>9.4f} {r['samples_s'] / ref['samples_s']:>7.2f}x")


if __name__ == "__main__":
    main()
