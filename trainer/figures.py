"""The run page's figures: ROC and reliability per scene, AUC by cold-start bucket, fusion's gate
alpha and the learning curves. Each is drawn with matplotlib's object API
(`matplotlib.figure.Figure`, rendered by Agg), never pyplot, so no global backend or figure state is
touched; `page.Figures` saves and embeds them.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from m2ctr.schema import COLD_BUCKETS, COLD_KEYS

from . import metrics as M
from . import page as H


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(false positive rate, true positive rate) at every distinct threshold; None for one class."""
    y = np.asarray(y, np.float64)
    order = np.argsort(-np.asarray(p, np.float64), kind="stable")
    y, p = y[order], np.asarray(p, np.float64)[order]
    if len(y) == 0 or y.sum() in (0, len(y)):
        return None
    last_of_tie = np.r_[np.flatnonzero(np.diff(p)), len(p) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = last_of_tie + 1 - tp
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]


def _scene_mask(s: dict, scene: str) -> np.ndarray:
    return s["scene"].astype(np.int64) == int(scene)


def roc_figure(scores: dict, metrics: dict, scenes: list[str]) -> Figure:
    fig = Figure(figsize=(5.2 * len(scores), 4.8))
    for k, (part, s) in enumerate(scores.items()):
        ax = fig.add_subplot(1, len(scores), k + 1)
        ax.plot([0, 1], [0, 1], color="#bbb", lw=1, ls=":")
        for j, scene in enumerate(scenes):
            mask = _scene_mask(s, scene)
            curve = roc_curve(s["label"][mask], s["probability"][mask])
            a = metrics[part]["per_scene_auc"].get(scene)
            label = f"scene {scene}: AUC {M.fmt(a)} (n={int(mask.sum()):,})"
            if curve is None:
                ax.plot([], [], color=f"C{j}", label=label + ", one class")
            else:
                ax.plot(*curve, color=f"C{j}", lw=1.4, label=label)
        curve = roc_curve(s["label"], s["probability"])
        if curve is not None:
            ax.plot(*curve, color="black", lw=1.6, ls="--", label=f"all: AUC {M.fmt(metrics[part].get('auc'))}")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="false positive rate", ylabel="true positive rate",
               title=f"ROC per scene, {H.PART_TITLES[part]}")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def reliability_figure(scores: dict, metrics: dict, scenes: list[str], bins: int) -> Figure:
    panels = [None, *scenes]  # None: all rows
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.9 * nrows))
    markers = {"val": {"marker": "o", "mfc": "none"}, "test": {"marker": "s"}}
    for k, scene in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        top, titles = 0.0, []
        for part, s in scores.items():
            mask = np.ones(len(s["label"]), bool) if scene is None else _scene_mask(s, scene)
            n, mean_p, rate = M.calibration_bins(s["label"][mask], s["probability"][mask], bins)
            if len(n) == 0:
                continue
            ax.plot(mean_p, rate, ls="-", lw=1, color="C0" if part == "test" else "C1",
                    label=H.PART_TITLES[part], **markers[part])
            if part == "test" and "probability_raw" in s:
                _, raw_p, raw_rate = M.calibration_bins(s["label"][mask], s["probability_raw"][mask], bins)
                ax.plot(raw_p, raw_rate, ls=":", lw=1, color="#777", marker=".", label="test, uncalibrated")
                top = max(top, raw_p.max(), raw_rate.max())
            top = max(top, mean_p.max(), rate.max())
            c = H.calibration(metrics[part])
            e = c.get("ece") if scene is None else c.get("per_scene", {}).get(scene, {}).get("ece")
            titles.append(f"{part} ECE {M.fmt(e)}")
        top = min(1.0, top * 1.08) or 1.0
        ax.plot([0, top], [0, top], color="#999", lw=1, ls=":")
        ax.set(xlim=(0, top), ylim=(0, top), xlabel="mean predicted", ylabel="observed click rate")
        ax.set_title(("all scenes" if scene is None else f"scene {scene}") + "\n" + ", ".join(titles), fontsize=9)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def cold_figure(metrics: dict, parts: list[str]) -> Figure:
    fig = Figure(figsize=(11, 4.2))
    width = 0.8 / max(len(parts), 1)
    for k, side in enumerate(("user", "item")):
        ax = fig.add_subplot(1, 2, k + 1)
        values = []
        for j, part in enumerate(parts):
            for b, name in enumerate(COLD_BUCKETS):
                cell = metrics[part]["cold_start"][side].get(name, {})
                a, n = cell.get("auc"), cell.get("n", 0)
                x = b + (j - (len(parts) - 1) / 2) * width
                if a is None:
                    ax.text(x, 0.5, f"n={n:,}\nno AUC", ha="center", va="bottom", fontsize=7, color="#666")
                    continue
                values.append(a)
                ax.bar(x, a - 0.5, width * 0.95, bottom=0.5, color=f"C{j}", label=H.PART_TITLES[part])
                ax.text(x, max(a, 0.5) + 0.005, f"n={n:,}", ha="center", va="bottom", fontsize=7)
        ax.axhline(0.5, color="#777", lw=1)
        lo = min([0.45, *[v - 0.03 for v in values]])
        hi = max([0.6, *[v + 0.06 for v in values]])
        ax.set(ylim=(lo, min(hi, 1.05)), xticks=range(len(COLD_BUCKETS)), xticklabels=COLD_BUCKETS,
               ylabel="AUC", title=f"AUC by {side} cold-start bucket")
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))  # one legend entry per split
        ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def alpha_figure(s: dict, scenes: list[str], part_title: str) -> Figure:
    alpha = np.asarray(s["alpha"], np.float64).reshape(len(s["alpha"]), -1).mean(1)
    groups = [
        *((f"{side} cold bucket", [(b, alpha[s[key] == k]) for k, b in enumerate(COLD_BUCKETS)])
          for side, key in COLD_KEYS.items()),
        ("scene", [(sc, alpha[_scene_mask(s, sc)]) for sc in scenes]),
    ]
    fig = Figure(figsize=(13, 4.2))
    for k, (title, slices) in enumerate(groups):
        ax = fig.add_subplot(1, 3, k + 1)
        kept = [(name, v) for name, v in slices if len(v)]
        if kept:
            ax.boxplot([v for _, v in kept], showmeans=True, showfliers=False, widths=0.6)
            ax.set_xticks(range(1, len(kept) + 1),
                          [f"{name}\nn={len(v):,}" for name, v in kept], fontsize=8)
        ax.set(ylabel="alpha", title=f"alpha by {title}, {part_title}")
    fig.tight_layout()
    return fig


def history_figure(history: list[dict]) -> Figure:
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(7.5, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(epochs, [h.get("train_loss") for h in history], "o-", color="C0", label="train loss")
    ax.set(xlabel="epoch", ylabel="train loss (BCE)", title="Learning curves")
    ax.set_xticks(epochs)
    ax2 = ax.twinx()
    val = [np.nan if h.get("val_auc") is None else h["val_auc"] for h in history]
    ax2.plot(epochs, val, "s-", color="C1", label="validation AUC")
    ax2.set_ylabel("validation AUC")
    if not np.all(np.isnan(val)):
        best = epochs[int(np.nanargmax(val))]
        ax.axvline(best, color="#999", ls=":", lw=1, label=f"best epoch ({best})")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="center right")
    fig.tight_layout()
    return fig
