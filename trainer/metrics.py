"""AUC, logloss, GAUC, calibration and the per-scene / cold-start slices of `metrics.json`.

AUC is the rank-sum (Mann-Whitney) statistic with tied scores sharing their
average rank, computed for many groups at once with one sort; a group with a
single class has no AUC and is reported as None (null in JSON).

Calibration uses equal-mass bins: rows sorted by predicted probability and cut
into `ECE_BINS` bins of (nearly) equal row count, so that the many rows with a
small CTR are not all in one bin as they would be with equal-width bins.
"""

from __future__ import annotations

import numpy as np

from m2ctr.schema import COLD_BUCKETS as COLD_NAMES
from m2ctr.schema import COLD_KEYS

# The per-row arrays `evaluate` reads beside the predictions
# (`trainer.preprocessing.Preprocessor.transform`).
ROW_KEYS = ("label", "scene", *COLD_KEYS.values(), "user_key")


def grouped_auc(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group AUC and group size; groups are dense ints 0..G-1. AUC is nan for one-class groups."""
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    g = np.asarray(groups, np.int64)
    n_groups = int(g.max()) + 1 if g.size else 0
    order = np.lexsort((p, g))
    g, p, y = g[order], p[order], y[order]
    new_group = np.r_[True, g[1:] != g[:-1]]
    starts = np.flatnonzero(new_group)
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)])) + 1.0
    new_tie = new_group | np.r_[True, p[1:] != p[:-1]]
    tie = np.cumsum(new_tie) - 1
    rank = (np.bincount(tie, rank) / np.bincount(tie))[tie]
    n = np.bincount(g, minlength=n_groups).astype(np.float64)
    n_pos = np.bincount(g, y, minlength=n_groups)
    n_neg = n - n_pos
    rank_pos = np.bincount(g, rank * y, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc, n


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    if len(y) == 0:
        return None
    value = grouped_auc(y, p, np.zeros(len(y), np.int64))[0][0]
    return None if np.isnan(value) else float(value)


def row_logloss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Each row's logloss."""
    y = np.asarray(y, np.float64)
    p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def logloss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float | None:
    if len(y) == 0:
        return None
    return float(row_logloss(y, p, eps).mean())


def gauc(y: np.ndarray, p: np.ndarray, users: np.ndarray) -> float | None:
    """Impression-weighted mean of per-user AUC over users who have both clicks and non-clicks."""
    if len(y) == 0:
        return None
    _, codes = np.unique(np.asarray(users), return_inverse=True)
    per_user, n = grouped_auc(y, p, codes.ravel())
    ok = ~np.isnan(per_user)
    if not ok.any():
        return None
    return float(np.sum(per_user[ok] * n[ok]) / np.sum(n[ok]))


ECE_BINS = 10


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> tuple[np.ndarray, ...]:
    """(rows, mean predicted probability, observed click rate) of each equal-mass bin.

    Rows are sorted by `p` (stable, so ties keep their order) and split as `np.array_split`
    does: the first `len % bins` bins get one row more. Fewer rows than bins give one row per bin.
    """
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    if len(y) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    order = np.argsort(p, kind="stable")
    k = min(bins, len(y))
    size, extra = divmod(len(y), k)
    n = np.full(k, size) + (np.arange(k) < extra)
    starts = np.r_[0, np.cumsum(n)[:-1]]
    mean_p = np.add.reduceat(p[order], starts) / n
    rate = np.add.reduceat(y[order], starts) / n
    return n.astype(np.int64), mean_p, rate


def ece(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float | None:
    """Expected calibration error: row-weighted mean |mean predicted - observed rate| over equal-mass bins."""
    n, mean_p, rate = calibration_bins(y, p, bins)
    if len(n) == 0:
        return None
    return float(np.sum(n * np.abs(mean_p - rate)) / n.sum())


def calibration(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> dict:
    """ECE, mean predicted probability and observed click rate of one slice (None when empty)."""
    y = np.asarray(y, np.float64)  # labels arrive as float32; rates are reported in float64
    empty = len(y) == 0
    return {
        "n": len(y),
        "ece": ece(y, p, bins),
        "mean_predicted": None if empty else float(np.mean(p)),
        "observed_rate": None if empty else float(np.mean(y)),
    }


def evaluate(split: dict[str, np.ndarray], p: np.ndarray, scenes: list[int]) -> dict:
    """The `val` / `test` block of metrics.json for predictions `p` on `split`."""
    y = split["label"]
    per_scene, per_scene_cal = {}, {}
    for idx, scene in enumerate(scenes):
        mask = split["scene"] == idx
        per_scene[str(scene)] = auc(y[mask], p[mask])
        per_scene_cal[str(scene)] = calibration(y[mask], p[mask])
    overall = calibration(y, p)
    cold = {}
    for side, key in COLD_KEYS.items():
        cold[side] = {}
        for b, name in enumerate(COLD_NAMES):
            mask = split[key] == b
            cold[side][name] = {"n": int(mask.sum()), "auc": auc(y[mask], p[mask])}
    return {
        "n": len(y),
        "auc": auc(y, p),
        "logloss": logloss(y, p),
        "gauc": gauc(y, p, split["user_key"]),
        "per_scene_auc": per_scene,
        "cold_start": cold,
        "calibration": {
            "ece_bins": ECE_BINS,
            "ece": overall["ece"],
            "mean_predicted": overall["mean_predicted"],
            "observed_rate": overall["observed_rate"],
            "per_scene": per_scene_cal,
        },
    }


def entropy(rate: float) -> float | None:
    """Cross-entropy of always predicting `rate` (the normalized-entropy baseline)."""
    if rate is None or not 0 < rate < 1:
        return None
    return float(-(rate * np.log(rate) + (1 - rate) * np.log1p(-rate)))


def probability_quality(y: np.ndarray, p: np.ndarray, base_rate: float | None) -> dict:
    """How good the probabilities are as probabilities, for one slice: logloss, normalized entropy
    (logloss over the entropy of the training CTR, He et al., ADKDD 2014), ECE and predicted over
    observed CTR."""
    y = np.asarray(y, np.float64)
    cal = calibration(y, p)
    ll = logloss(y, p)
    h = entropy(base_rate)
    ratio = None
    if cal["observed_rate"]:
        ratio = cal["mean_predicted"] / cal["observed_rate"]
    return {"n": cal["n"], "logloss": ll, "ne": None if ll is None or h is None else ll / h, "ece": cal["ece"],
            "mean_predicted": cal["mean_predicted"], "observed_rate": cal["observed_rate"],
            "predicted_over_observed": ratio}


def click_rates(clicks: np.ndarray, rows: np.ndarray) -> dict:
    """Click rate overall and per scene index from per-scene clicks and rows: normalized entropy's
    baseline, as `calibration_effect` reads it."""
    return {"overall": float(clicks.sum() / rows.sum()) if rows.sum() else None,
            "per_scene": {i: float(clicks[i] / rows[i]) for i in range(len(rows)) if rows[i]}}


def calibration_effect(split: dict[str, np.ndarray], raw: np.ndarray, calibrated: np.ndarray, scenes,
                       train_rate: dict) -> dict:
    """`probability_quality` overall and per scene, before and after calibration. `train_rate` holds
    the training CTR: {"overall": r, "per_scene": {scene index: r}}; a scene's NE uses its own."""
    y = split["label"]
    out = {}
    for name, p in (("before", raw), ("after", calibrated)):
        per_scene = {}
        for idx, scene in enumerate(scenes):
            mask = split["scene"] == idx
            per_scene[str(scene)] = probability_quality(y[mask], p[mask], train_rate["per_scene"].get(idx))
        out[name] = {**probability_quality(y, p, train_rate["overall"]), "per_scene": per_scene}
    return out


def _group_means(v: np.ndarray, groups: np.ndarray, names) -> dict:
    """{name: mean of v over the rows of group index i} for the i-th name; None for an empty group."""
    return {n: (float(v[groups == i].mean()) if (groups == i).any() else None) for i, n in enumerate(names)}


def summarise_extras(split: dict[str, np.ndarray], extras: dict[str, np.ndarray], scenes) -> dict:
    """Mean of each per-row model output (e.g. fusion's alpha) overall, per scene, per cold bucket."""
    out = {}
    for name, values in extras.items():
        v = np.asarray(values, np.float64).reshape(len(values), -1).mean(1)
        out[name] = {
            "mean": float(v.mean()),
            "per_scene": _group_means(v, split["scene"], [str(s) for s in scenes]),
            **{key: _group_means(v, split[key], COLD_NAMES) for key in COLD_KEYS.values()},
        }
    return out


def fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def cold_start_markdown(metrics: dict) -> str:
    """The cold-start report: AUC and impressions per bucket, validation and test."""
    lines = [
        f"# Cold-start report: {metrics['model']}",
        "",
        (
            "Buckets count a user's (item's) impressions on the training days "
            f"({', '.join(metrics['split']['train_days'])}): zero = 0, few = 1..4, warm = 5 or more."
        ),
        "",
    ]
    for part in ("val", "test"):
        m = metrics[part]
        days = ", ".join(metrics["split"][f"{part}_days"])
        lines += [
            (
                f"## {'Validation' if part == 'val' else 'Test'} ({days}): "
                f"n={m['n']}, AUC {fmt(m['auc'])}, GAUC {fmt(m['gauc'])}, logloss {fmt(m['logloss'])}"
            ),
            "",
            "| side | bucket | impressions | share | AUC |",
            "|---|---|---:|---:|---:|",
        ]
        for side in ("user", "item"):
            for name in COLD_NAMES:
                b = m["cold_start"][side][name]
                share = b["n"] / m["n"] if m["n"] else 0.0
                lines.append(f"| {side} | {name} | {b['n']} | {share:.1%} | {fmt(b['auc'])} |")
        lines.append("")
    return "\n".join(lines)


def summary_text(metrics: dict, part: str = "test") -> str:
    """A few lines for the terminal: overall, per scene, cold buckets."""
    m = metrics[part]
    scenes = "  ".join(f"{s}:{fmt(a)}" for s, a in m["per_scene_auc"].items())
    cold = "  ".join(
        f"{side}/{name}:{fmt(m['cold_start'][side][name]['auc'])} (n={m['cold_start'][side][name]['n']})"
        for side in ("user", "item")
        for name in COLD_NAMES
    )
    return (
        f"{part} n={m['n']}  AUC {fmt(m['auc'])}  GAUC {fmt(m['gauc'])}  logloss {fmt(m['logloss'])}\n"
        f"  per-scene AUC  {scenes}\n"
        f"  cold-start AUC {cold}"
    )
