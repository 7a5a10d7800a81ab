"""The ladder page of `python -m trainer report LADDER_DIR`: test AUC per rung from `ladder.json`,
mean ± std over seeds, beside the peers and the oracle, with a figure (matplotlib's object API, as
`trainer.figures`) and links to each rung's runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from . import page as H
from .artifacts import LadderDir
from .ladder import RUNGS, rung_kind
from .table import SPLIT_PARTS, TrainerError

LADDER_COLUMNS = ("auc", "item zero", "user zero")  # the ladder figure's panels, when present
PANEL_TITLES = {"auc": "overall", "item zero": "zero-history items", "user zero": "zero-history users"}


def _rung_kinds(doc: dict) -> dict[str, str]:
    """{rung: 'model' | 'peer' | 'oracle'} for each rung in ladder.json, from the rung definitions it
    records (`rungs`), else from this trainer's."""
    definitions = {**RUNGS, **(doc.get("rungs") or {})}
    return {rung: rung_kind(definitions.get(rung, {})) for rung in doc.get("test_auc") or {}}


def _cell(stat: dict | None) -> str:
    """'mean ± std' as text; the std sits on a second, smaller line so wide ladders still fit."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    if stat.get("std") is None:
        return f"{stat['mean']:.4f}"
    return H.Html(f"{stat['mean']:.4f}<span class=\"sd\"> ± {stat['std']:.4f}</span>")


def ladder_page(ladder: Path) -> tuple[list[str], str]:
    doc = LadderDir(ladder).summary()
    table = doc.get("test_auc") or {}
    if not table:
        raise TrainerError(f"{ladder / LadderDir.SUMMARY} has no test_auc entries")
    # our rungs in ladder order, then the peers, then the oracle
    kinds = _rung_kinds(doc)
    order = {"model": 0, "peer": 1, "oracle": 2}
    table = dict(sorted(table.items(), key=lambda kv: order[kinds[kv[0]]]))
    oracle = next((r for r in table if kinds[r] == "oracle"), None)
    title = f"Ladder report ({ladder.name})"
    columns = list(dict.fromkeys(c for stats in table.values() for c in stats))
    seeds = doc.get("seeds", [])
    meta = (f'<p class="meta">ladder <code>{H.e(ladder.resolve())}</code>; table '
            f'<code>{H.e(doc.get("table", "?"))}</code>; seeds {H.e(seeds)}; '
            "test AUC, mean ± sample std over seeds.</p>")
    body = [f"<h1>{H.e(title)}</h1>", meta, H.data_quality(doc.get("warehouse"), ladder)]
    split = doc.get("split", {})
    if split:
        body.append("<p>Split: " + "; ".join(
            f"{p} {H.e(', '.join(split.get(f'{p}_days', [])))}" for p in SPLIT_PARTS) + ".</p>")
    if oracle is not None:
        body.append("<p>The oracle scores every test row with its true click probability (the synthetic "
                    "generator's <code>truth.parquet</code>): the AUC no model can beat on this data.</p>")
    else:
        body.append(H.note("No oracle entry in ladder.json (it needs the generator's truth.parquet)."))
    if "peer" not in kinds.values():
        body.append(H.note("No peer rows (LightGBM) in ladder.json."))

    figs = H.Figures(ladder)
    panels = [c for c in LADDER_COLUMNS if c in columns]
    body.append("<p>Dots are single seeds, bars mean ± std; blue circles are our rungs, orange squares "
                "the peers, the dashed red line the oracle.</p>")
    body.append(figs.img("ladder", _ladder_figure(table, kinds, panels),
                         "test AUC per rung, mean and std over seeds, overall and on zero-history items"))
    rows = [[rung, *(_cell(stats.get(c)) for c in columns)] for rung, stats in table.items()]
    classes = [kinds[r] for r in table]
    sizes = doc.get("test_rows", {})
    if sizes:
        rows.append(["test rows", *(H.count(sizes[c]) if c in sizes else "" for c in columns)])
        classes.append("")
    body.append('<div class="wide">' + H.table("ladder", ["rung", *columns], rows, classes) + "</div>")
    body += _ladder_runs(ladder, table)
    return body, title


def _ladder_figure(table: dict, kinds: dict[str, str], panels: list[str]) -> Figure:
    rungs = [r for r in table if kinds[r] != "oracle"]
    oracle_rung = next((r for r in table if kinds[r] == "oracle"), None)
    fig = Figure(figsize=(4.6 * max(len(panels), 1), 0.5 * len(rungs) + 1.8))
    for k, col in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for y, rung in enumerate(rungs):
            stat = table[rung].get(col) or {}
            if stat.get("mean") is None:
                continue
            peer = kinds[rung] == "peer"
            color = "C1" if peer else "C0"
            vals = [v for v in stat.get("values", []) if v is not None]
            ax.scatter(vals, [y] * len(vals), s=10, color=color, alpha=0.4, zorder=2)
            ax.errorbar(stat["mean"], y, xerr=stat.get("std") or 0, fmt="s" if peer else "o",
                        color=color, capsize=4, zorder=3)
        oracle = (table.get(oracle_rung, {}).get(col) or {}).get("mean")
        if oracle is not None:
            ax.axvline(oracle, color="#b00020", ls="--", lw=1.2, label=f"oracle {oracle:.4f}")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_yticks(range(len(rungs)), rungs if k == 0 else [""] * len(rungs))
        ax.set_ylim(len(rungs) - 0.5, -0.5)
        ax.set(xlabel="test AUC", title=PANEL_TITLES.get(col, col))
        ax.grid(axis="x", color="#eee")
    fig.tight_layout()
    return fig


def _ladder_runs(ladder: Path, table: dict) -> list[str]:
    """Links to each rung's runs (their own report when written, else metrics.json)."""
    items = []
    for rung in table:
        links = []
        for run in LadderDir(ladder).runs(rung):
            target = run.file(run.REPORT) if run.file(run.REPORT).is_file() else run.file(run.METRICS)
            if target.is_file():
                rel = Path(os.path.relpath(target, ladder)).as_posix()
                links.append(f'<a href="{H.e(rel)}">{H.e(run.path.name)}</a>')
        if links:
            items.append(f"<li>{H.e(rung)}: {', '.join(links)}</li>")
    return ["<h2>Runs</h2>", "<ul>", *items, "</ul>"] if items else []
