"""`python -m trainer report RUN_DIR|LADDER_DIR`: one self-contained `report.html` beside a run or a ladder.

The page embeds every figure as a base64 PNG (so it opens from disk, mailed or copied alone) and
also writes each PNG beside it (`report_<figure>.png`). A run page reads the run through
`trainer.artifacts.RunDir`: its metrics (the numbers in its tables come from there and nowhere
else), config, history and the per-row scores of the validation and test days (ROC, reliability
and alpha plots); a ladder page reads `ladder.json`. Both link the data-quality result of the
warehouse the run (the ladder) read, as it was recorded when it ran. Any optional piece that is
missing is named on the page instead.

Figures use matplotlib's object API (`matplotlib.figure.Figure`, rendered by Agg), never pyplot,
so no global backend or figure state is touched.
"""

from __future__ import annotations

import base64
import html
import io
import os
from datetime import datetime
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from m2ctr.schema import COLD_BUCKETS

from . import metrics as M
from .artifacts import Directory, RunDir, read_json
from .data import TrainerError

REPORT_NAME = Directory.REPORT
PARTS = ("val", "test")
PART_TITLES = {"val": "validation", "test": "test"}
SCORE_COLUMNS = ("label", "probability", "scene", "cold_user", "cold_item")
ORACLE = "oracle"
PEER_PREFIX = "lightgbm"  # peer rungs: "lightgbm", "lightgbm+text"
LADDER_COLUMNS = ("auc", "item zero", "user zero")  # the ladder figure's panels, when present
PANEL_TITLES = {"auc": "overall", "item zero": "zero-history items", "user zero": "zero-history users"}
DPI = 100


def write_report(path: str | Path) -> Path:
    """Write `report.html` (and its PNGs) into the run or ladder directory `path`; return its path."""
    path = Path(path)
    if not path.is_dir():
        raise TrainerError(f"{path}: no such directory (expected a run or a ladder directory)")
    if (path / "ladder.json").is_file():
        body, title = _ladder_page(path)
    elif (path / "metrics.json").is_file():
        body, title = _run_page(path)
    else:
        raise TrainerError(f"{path} is neither a run (metrics.json) nor a ladder (ladder.json)")
    return Directory(path).write_report(_document(title, body))


# ---------------------------------------------------------------------------- page pieces


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta { color: #555; } .note { background: #fff7e0; border-left: 4px solid #e0a800; padding: 0.4em 0.8em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; } th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.wide { overflow-x: auto; } .sd { display: block; font-size: 0.82em; color: #666; }
tr.oracle td { color: #b00020; font-style: italic; } tr.peer td { color: #8a4b00; }
img { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _document(title: str, body: list[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<p class=\"meta\">Written {datetime.now():%Y-%m-%d %H:%M:%S} by "
        "<code>python -m trainer report</code>.</p>\n</body>\n</html>\n"
    )


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _table(table_id: str, header: list[str], rows: list[list], row_classes: list[str] | None = None) -> str:
    """An HTML table; numeric-looking cells are right-aligned."""
    out = [f'<table id="{_e(table_id)}">', "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for k, row in enumerate(rows):
        cls = f' class="{_e(row_classes[k])}"' if row_classes and row_classes[k] else ""
        cells = "".join(
            f'<td class="num">{_cell_html(c)}</td>' if isinstance(c, (int, float, np.number)) or _numeric(c)
            else f"<td>{_cell_html(c)}</td>"
            for c in row
        )
        out.append(f"<tr{cls}>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


class _Html(str):
    """A table cell that is already HTML (its parts escaped), put in as it is."""


def _cell_html(c) -> str:
    return c if isinstance(c, _Html) else _e(c)


def _numeric(text) -> bool:
    try:
        float(str(text).replace(",", "").split(" ")[0])
        return True
    except ValueError:
        return False


def _count(n) -> str:
    return "-" if n is None else f"{int(n):,}"


class _Figures:
    """Saves each figure as `report_<name>.png` beside the page and returns its embedded <img>."""

    def __init__(self, directory: Path):
        self.directory = Directory(directory)

    def img(self, name: str, fig: Figure, alt: str) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)  # each figure already ran tight_layout
        data = buf.getvalue()
        file = self.directory.write_report_figure(name, data)
        b64 = base64.b64encode(data).decode("ascii")
        return f'<img src="data:image/png;base64,{b64}" alt="{_e(alt)}" data-file="{_e(file)}">'


def _data_quality(record: dict | None, directory: Path) -> str:
    """The data-quality result of the warehouse the run read, as recorded when it ran, or a note."""
    if not record:
        return _note("This run did not record the warehouse it read (written before runs recorded it): "
                     "no data-quality result to show.")
    dq = record.get("data_quality")
    if not dq:
        where = record.get("schema_dir")
        if where is None:
            return _note(f"No data-quality result: the table {record.get('table')} is not in a warehouse "
                         "(<warehouse>/<schema>.db/<model>).")
        return _note(f"No data-quality result for the warehouse this run read ({where}) when it ran; "
                     "`make quality` (python -m expectations validate) writes one.")
    verdict = "passed" if dq.get("success") else "FAILED"
    failed = [name for name, ok in (dq.get("suites") or {}).items() if not ok]
    text = (f"Data quality of the warehouse this run read: {verdict}"
            + (f" ({', '.join(failed)})" if failed else "")
            + f", validated {dq.get('created_at', '?')}")
    docs = dq.get("data_docs")
    if docs and Path(docs).is_file():
        rel = Path(os.path.relpath(Path(docs).resolve(), directory.resolve())).as_posix()
        return f'<p id="data-quality">{_e(text)}: <a id="data-docs" href="{_e(rel)}">Data Docs</a></p>'
    return f'<p id="data-quality">{_e(text)} (its Data Docs {_e(docs)} are no longer there).</p>'


def _content_options(config: dict) -> str:
    """The content side of a run in words: the parts it used, then their settings."""
    content = config.get("content")
    if not content:
        options = config.get("config", {})
        return "text components (TF-IDF -> SVD)" if options.get("text") else "none"
    parts = [name for key, name in (("tokens", "tokens"), ("topics", "topics"), ("vectors", "text vectors"),
                                    ("fallback", "fallback vectors")) if content.get(key)]
    settings = [f"{k} {v}" for k, v in content.items()
                if k not in ("tokens", "topics", "vectors", "fallback", "cache_dir", "device", "batch_size")
                and v is not None]
    return ", ".join(parts or ["none"]) + (f" ({', '.join(settings)})" if settings else "")


# ---------------------------------------------------------------------------- run page


def _load_scores(run: RunDir) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """{part: {column: array}} for the scores files that are there, and notes on those that are not."""
    scores, notes = {}, []
    for part in PARTS:
        f = run.scores_path(part)
        try:
            t = run.scores(part)
        except (OSError, ValueError) as e:  # a torn or foreign file (ArrowInvalid): say so, draw the rest
            notes.append(f"cannot read {f.name}: {e}")
            continue
        if t is None:
            notes.append(f"{f.name} is not in this run: the ROC, reliability and alpha plots of "
                         f"{PART_TITLES[part]} need it (runs written before per-row scores were saved).")
            continue
        missing = [c for c in SCORE_COLUMNS if c not in t.column_names]
        if missing:
            notes.append(f"{f.name} lacks column(s) {', '.join(missing)}; its plots are left out.")
            continue
        scores[part] = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}
    return scores, notes


def _check_scores(scores: dict, metrics: dict) -> list[str]:
    """Notes where a scores file disagrees with metrics.json (e.g. a stale file from an earlier fit)."""
    notes = []
    for part, s in scores.items():
        m = metrics.get(part, {})
        if len(s["label"]) != m.get("n"):
            notes.append(f"scores_{part}.parquet has {len(s['label']):,} rows but metrics.json says "
                         f"n={m.get('n')}: the plots may not belong to this run's metrics.")
            continue
        a = M.auc(s["label"], s["probability"])
        if a is not None and m.get("auc") is not None and abs(a - m["auc"]) > 1e-6:
            notes.append(f"scores_{part}.parquet gives AUC {a:.6f}, metrics.json {m['auc']:.6f}: "
                         "the plots may not belong to this run's metrics.")
    return notes


def _run_page(run: Path) -> tuple[list[str], str]:
    rd = RunDir(run)
    metrics = rd.metrics()
    config = rd.config() if rd.file(rd.CONFIG).is_file() else {}
    history = rd.history()
    scores, notes = _load_scores(rd)
    notes += _check_scores(scores, metrics)
    figs = _Figures(run)
    model = metrics.get("model", config.get("model", "?"))
    parts = [p for p in PARTS if p in metrics]
    scenes = _scene_keys(metrics, parts)
    title = f"Run report: {model}" + ("" if run.name == model else f" ({run.name})")

    body = [f"<h1>{_e(title)}</h1>", _run_meta(run, model, config), _data_quality(config.get("warehouse"), run)]
    body += [_note(n) for n in notes]

    body.append("<h2>Headline metrics</h2>")
    body.append(_headline_table(metrics, parts))
    body.append("<h2>Split</h2>")
    body.append(_split_table(metrics, parts, rd))

    body.append("<h2>Per scene</h2>")
    body.append(_per_scene_table(metrics, parts, scenes))
    if scores:
        body.append(figs.img("roc", _roc_figure(scores, metrics, scenes), "ROC curve per scene"))
        bins = next((metrics[p].get("calibration", {}).get("ece_bins") for p in parts), None) or M.ECE_BINS
        body.append("<h3>Reliability per scene</h3>")
        body.append(f"<p>Equal-mass bins ({bins} per panel): each point is one bin's mean predicted "
                    "probability against its observed click rate; on the diagonal is perfect calibration.</p>")
        body.append(figs.img("reliability", _reliability_figure(scores, metrics, scenes, bins),
                             "reliability diagram per scene"))
        if "test" in scores and "probability_raw" in scores["test"]:
            body.append("<p>The dotted grey line is the test rows before calibration.</p>")
    else:
        body.append(_note("No per-row scores in this run: ROC and reliability diagrams are left out."))

    body.append(_calibration_section(metrics, parts, scenes))
    body.append("<h2>Cold start</h2>")
    body.append("<p>Buckets count a user's (item's) impressions on the training days: "
                "zero = 0, few = 1..4, warm = 5 or more. Bars start at chance (0.5); n is on each bar.</p>")
    body.append(figs.img("cold_start", _cold_figure(metrics, parts), "AUC by cold-start bucket"))
    body.append(_cold_table(metrics, parts))

    alpha_html = _alpha_section(metrics, scores, figs, scenes)
    if alpha_html:
        body.append("<h2>Fusion gate alpha</h2>")
        body += alpha_html

    body.append("<h2>Training</h2>")
    if history:
        body.append(figs.img("history", _history_figure(history), "train loss and validation AUC per epoch"))
        body.append(_history_table(history))
    else:
        body.append(_note("history.json is not in this run: no learning curves."))
    return body, title


def _scene_keys(metrics: dict, parts: list[str]) -> list[str]:
    keys = {k for p in parts for k in metrics[p].get("per_scene_auc", {})}
    return sorted(keys, key=lambda k: (len(k), k))


def _run_meta(run: Path, model: str, config: dict) -> str:
    """The run header: what was trained, on what, with which options ("not recorded" where unknown)."""
    options = config.get("config", {})

    def known(value):
        return "not recorded" if value is None else value

    rows = [["run", str(run.resolve())], ["model", model], ["seed", known(options.get("seed"))],
            ["max epochs", known(options.get("epochs"))],
            ["content", _content_options(config) if config else "not recorded"],
            ["table", known(config.get("table"))], ["device", known(config.get("device"))],
            ["threads", known(config.get("threads"))]]
    return _table("run", ["field", "value"], [[k, _Html(f"<code>{_e(v)}</code>") if k in ("run", "table") else str(v)]
                                    for k, v in rows])


def _cal(block: dict) -> dict:
    return block.get("calibration") or {}


def _headline_table(metrics: dict, parts: list[str]) -> str:
    header = ["split", "n", "AUC", "GAUC", "logloss", "ECE", "mean predicted", "observed rate"]
    rows = []
    for p in parts:
        m, c = metrics[p], _cal(metrics[p])
        rows.append([PART_TITLES[p], _count(m.get("n")), M.fmt(m.get("auc")), M.fmt(m.get("gauc")),
                     M.fmt(m.get("logloss")), M.fmt(c.get("ece")), M.fmt(c.get("mean_predicted")),
                     M.fmt(c.get("observed_rate"))])
    out = _table("headline", header, rows)
    bins = {_cal(metrics[p]).get("ece_bins") for p in parts} - {None}
    if bins:
        out += f"<p>ECE over {', '.join(map(str, sorted(bins)))} equal-mass bins.</p>"
    else:
        out += "<p>This run's metrics.json predates calibration: ECE and rates are shown as -.</p>"
    return out


def _split_table(metrics: dict, parts: list[str], run: RunDir) -> str:
    split = metrics.get("split", {})
    rows_known = dict(split.get("rows", {}))
    prep = run.preprocessing()  # the training-day row count the preprocessing was fitted on
    if "train" not in rows_known and prep is not None:
        n_train = prep.get("n_train_rows")
        if n_train is not None:
            rows_known["train"] = n_train
    rows = []
    for p in ("train", *parts):
        days = split.get(f"{p}_days", [])
        n = metrics[p].get("n") if p in metrics else rows_known.get(p)
        rows.append([PART_TITLES.get(p, p), ", ".join(days) or "-", len(days),
                     _count(n) if n is not None else "not recorded"])
    return _table("split", ["part", "days", "day count", "rows"], rows)


def _per_scene_table(metrics: dict, parts: list[str], scenes: list[str]) -> str:
    header = ["split", "scene", "n", "AUC", "ECE", "mean predicted", "observed rate"]
    rows = []
    for p in parts:
        per = _cal(metrics[p]).get("per_scene", {})
        for s in scenes:
            c = per.get(s, {})
            rows.append([PART_TITLES[p], s, _count(c.get("n")), M.fmt(metrics[p]["per_scene_auc"].get(s)),
                         M.fmt(c.get("ece")), M.fmt(c.get("mean_predicted")), M.fmt(c.get("observed_rate"))])
    return _table("per-scene", header, rows)


def _calibration_section(metrics: dict, parts: list[str], scenes: list[str]) -> str:
    """Before and after the run's per-scene calibration (fitted on the validation rows)."""
    effect = {p: _cal(metrics[p]) for p in parts if "before" in _cal(metrics[p])}
    if not effect:
        return "<h2>Calibration</h2>" + _note("This run predates per-scene calibration.")
    method = next(iter(effect.values())).get("method")
    header = ["split", "scene", "n", "NE before", "NE after", "ECE before", "ECE after",
              "predicted/observed before", "predicted/observed after"]
    rows = []
    for p, c in effect.items():
        for s in [None, *scenes]:
            b = c["before"] if s is None else c["before"]["per_scene"].get(s, {})
            a = c["after"] if s is None else c["after"]["per_scene"].get(s, {})
            rows.append([PART_TITLES[p], "all" if s is None else s, _count(b.get("n")), M.fmt(b.get("ne")),
                         M.fmt(a.get("ne")), M.fmt(b.get("ece")), M.fmt(a.get("ece")),
                         M.fmt(b.get("predicted_over_observed")), M.fmt(a.get("predicted_over_observed"))])
    return (f"<h2>Calibration</h2><p>Method: {_e(method)}, one map per scene fitted on the validation rows "
            "(so validation's after is in-sample; test's is not). NE is logloss over the entropy of the "
            "training click rate.</p>" + _table("calibration", header, rows))


def _cold_table(metrics: dict, parts: list[str]) -> str:
    header = ["side", "bucket"] + [f"{PART_TITLES[p]} {k}" for p in parts for k in ("n", "AUC")]
    rows = []
    for side in ("user", "item"):
        for b in COLD_BUCKETS:
            row = [side, b]
            for p in parts:
                cell = metrics[p]["cold_start"][side].get(b, {})
                row += [_count(cell.get("n")), M.fmt(cell.get("auc"))]
            rows.append(row)
    return _table("cold-start", header, rows)


def _history_table(history: list[dict]) -> str:
    rows = [[h.get("epoch"), M.fmt(h.get("train_loss")), M.fmt(h.get("val_auc")),
             _count(h.get("samples_per_s"))] for h in history]
    return _table("history", ["epoch", "train loss", "validation AUC", "samples/s"], rows)


# ---------------------------------------------------------------------------- run figures


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


def _roc_figure(scores: dict, metrics: dict, scenes: list[str]) -> Figure:
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
               title=f"ROC per scene, {PART_TITLES[part]}")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _reliability_figure(scores: dict, metrics: dict, scenes: list[str], bins: int) -> Figure:
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
                    label=PART_TITLES[part], **markers[part])
            if part == "test" and "probability_raw" in s:
                _, raw_p, raw_rate = M.calibration_bins(s["label"][mask], s["probability_raw"][mask], bins)
                ax.plot(raw_p, raw_rate, ls=":", lw=1, color="#777", marker=".", label="test, uncalibrated")
                top = max(top, raw_p.max(), raw_rate.max())
            top = max(top, mean_p.max(), rate.max())
            c = _cal(metrics[part])
            e = c.get("ece") if scene is None else c.get("per_scene", {}).get(scene, {}).get("ece")
            titles.append(f"{part} ECE {M.fmt(e)}")
        top = min(1.0, top * 1.08) or 1.0
        ax.plot([0, top], [0, top], color="#999", lw=1, ls=":")
        ax.set(xlim=(0, top), ylim=(0, top), xlabel="mean predicted", ylabel="observed click rate")
        ax.set_title(("all scenes" if scene is None else f"scene {scene}") + "\n" + ", ".join(titles), fontsize=9)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def _cold_figure(metrics: dict, parts: list[str]) -> Figure:
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
                ax.bar(x, a - 0.5, width * 0.95, bottom=0.5, color=f"C{j}", label=PART_TITLES[part])
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


def _alpha_section(metrics: dict, scores: dict, figs: _Figures, scenes: list[str]) -> list[str]:
    """Distribution of fusion's per-row gate by cold bucket and scene; [] for models without one."""
    summary = {p: metrics.get("extras", {}).get(p, {}).get("alpha") for p in PARTS}
    with_alpha = {p: s for p, s in scores.items() if "alpha" in s}
    if not any(summary.values()) and not with_alpha:
        return []
    out = [("<p>alpha in (0, 1) is the share of each row's logit that comes from the content "
            "(text) tower; the rest comes from the id and feature backbone.</p>")]
    if with_alpha:
        part = "test" if "test" in with_alpha else next(iter(with_alpha))
        out.append(figs.img("alpha", _alpha_figure(with_alpha[part], scenes, PART_TITLES[part]),
                            "distribution of alpha by cold-start bucket and by scene"))
    else:
        out.append(_note("The scores files carry no alpha column: only the means from metrics.json are shown."))
    parts = [p for p in PARTS if summary.get(p)]
    if parts:
        slices = [("all", lambda a: a.get("mean"))]
        for key, label in (("cold_user", "user"), ("cold_item", "item")):
            slices += [(f"{label} {b}", lambda a, k=key, b=b: a.get(k, {}).get(b)) for b in COLD_BUCKETS]
        slices += [(f"scene {sc}", lambda a, sc=sc: a.get("per_scene", {}).get(sc)) for sc in scenes]
        rows = [[name, *(M.fmt(get(summary[p])) for p in parts)] for name, get in slices]
        out.append(_table("alpha", ["slice", *(f"{PART_TITLES[p]} mean alpha" for p in parts)], rows))
    return out


def _alpha_figure(s: dict, scenes: list[str], part_title: str) -> Figure:
    alpha = np.asarray(s["alpha"], np.float64).reshape(len(s["alpha"]), -1).mean(1)
    groups = [
        ("user cold bucket", [(b, alpha[s["cold_user"] == k]) for k, b in enumerate(COLD_BUCKETS)]),
        ("item cold bucket", [(b, alpha[s["cold_item"] == k]) for k, b in enumerate(COLD_BUCKETS)]),
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


def _history_figure(history: list[dict]) -> Figure:
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


# ---------------------------------------------------------------------------- ladder page


def _rung_kind(rung: str) -> str:
    if rung == ORACLE:
        return "oracle"
    return "peer" if rung.startswith(PEER_PREFIX) else "model"


def _cell(stat: dict | None) -> str:
    """'mean ± std' as text; the std sits on a second, smaller line so wide ladders still fit."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    if stat.get("std") is None:
        return f"{stat['mean']:.4f}"
    return _Html(f"{stat['mean']:.4f}<span class=\"sd\"> ± {stat['std']:.4f}</span>")


def _ladder_page(ladder: Path) -> tuple[list[str], str]:
    doc = read_json(ladder / "ladder.json", "ladder")
    table = doc.get("test_auc") or {}
    if not table:
        raise TrainerError(f"{ladder / 'ladder.json'} has no test_auc entries")
    # our rungs in ladder order, then the peers, then the oracle
    order = {"model": 0, "peer": 1, "oracle": 2}
    table = dict(sorted(table.items(), key=lambda kv: order[_rung_kind(kv[0])]))
    title = f"Ladder report ({ladder.name})"
    columns = list(dict.fromkeys(c for stats in table.values() for c in stats))
    seeds = doc.get("seeds", [])
    meta = (f'<p class="meta">ladder <code>{_e(ladder.resolve())}</code>; table '
            f'<code>{_e(doc.get("table", "?"))}</code>; seeds {_e(seeds)}; '
            "test AUC, mean ± sample std over seeds.</p>")
    body = [f"<h1>{_e(title)}</h1>", meta, _data_quality(doc.get("warehouse"), ladder)]
    split = doc.get("split", {})
    if split:
        body.append("<p>Split: " + "; ".join(
            f"{p} {_e(', '.join(split.get(f'{p}_days', [])))}" for p in ("train", "val", "test")) + ".</p>")
    if ORACLE in table:
        body.append("<p>The oracle scores every test row with its true click probability (the synthetic "
                    "generator's <code>truth.parquet</code>): the AUC no model can beat on this data.</p>")
    else:
        body.append(_note("No oracle entry in ladder.json (it needs the generator's truth.parquet)."))
    if not any(_rung_kind(r) == "peer" for r in table):
        body.append(_note("No peer rows (LightGBM) in ladder.json."))

    figs = _Figures(ladder)
    panels = [c for c in LADDER_COLUMNS if c in columns]
    body.append("<p>Dots are single seeds, bars mean ± std; blue circles are our rungs, orange squares "
                "the peers, the dashed red line the oracle.</p>")
    body.append(figs.img("ladder", _ladder_figure(table, panels),
                         "test AUC per rung, mean and std over seeds, overall and on zero-history items"))
    rows = [[rung, *(_cell(stats.get(c)) for c in columns)] for rung, stats in table.items()]
    kinds = [_rung_kind(r) for r in table]
    sizes = doc.get("test_rows", {})
    if sizes:
        rows.append(["test rows", *(_count(sizes[c]) if c in sizes else "" for c in columns)])
        kinds.append("")
    body.append('<div class="wide">' + _table("ladder", ["rung", *columns], rows, kinds) + "</div>")
    body += _ladder_runs(ladder, table)
    return body, title


def _ladder_figure(table: dict, panels: list[str]) -> Figure:
    rungs = [r for r in table if _rung_kind(r) != "oracle"]
    fig = Figure(figsize=(4.6 * max(len(panels), 1), 0.5 * len(rungs) + 1.8))
    for k, col in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for y, rung in enumerate(rungs):
            stat = table[rung].get(col) or {}
            if stat.get("mean") is None:
                continue
            peer = _rung_kind(rung) == "peer"
            color = "C1" if peer else "C0"
            vals = [v for v in stat.get("values", []) if v is not None]
            ax.scatter(vals, [y] * len(vals), s=10, color=color, alpha=0.4, zorder=2)
            ax.errorbar(stat["mean"], y, xerr=stat.get("std") or 0, fmt="s" if peer else "o",
                        color=color, capsize=4, zorder=3)
        oracle = (table.get(ORACLE, {}).get(col) or {}).get("mean")
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
    runs_dir = ladder / "runs"
    if not runs_dir.is_dir():
        return []
    items = []
    for rung in table:
        links = []
        for run in sorted(runs_dir.glob(f"{rung}-seed*")):
            target = run / REPORT_NAME if (run / REPORT_NAME).is_file() else run / "metrics.json"
            if target.is_file():
                rel = Path(os.path.relpath(target, ladder)).as_posix()
                links.append(f'<a href="{_e(rel)}">{_e(run.name)}</a>')
        if links:
            items.append(f"<li>{_e(rung)}: {', '.join(links)}</li>")
    return ["<h2>Runs</h2>", "<ul>", *items, "</ul>"] if items else []
