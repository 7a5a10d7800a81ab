"""`python -m trainer report RUN_DIR|LADDER_DIR`: one self-contained `report.html` beside a run or a ladder.

The page embeds every figure as a base64 PNG (so it opens from disk, mailed or copied alone) and
also writes each PNG beside it (`report_<figure>.png`). A run page reads the run through
`trainer.artifacts.RunDir`: its metrics (the numbers in its tables come from there and nowhere
else), config, history and the per-row scores of the validation and test days (ROC, reliability
and alpha plots); a ladder page reads `ladder.json`. Both link the data-quality result of the
warehouse the run (the ladder) read, as it was recorded when it ran. Any optional piece that is
missing is named on the page instead.

The run page is this module's; the ladder page is `trainer/ladder_page.py`, the run page's figures
`trainer/figures.py`, and the HTML both pages are built from `trainer/page.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from m2ctr.schema import COLD_BUCKETS, COLD_KEYS

from . import metrics as M
from . import page as H
from .artifacts import Directory, LadderDir, RunDir
from .figures import alpha_figure, cold_figure, history_figure, reliability_figure, roc_figure
from .ladder_page import ladder_page
from .table import TrainerError

SCORE_COLUMNS = ("label", "probability", "scene", *COLD_KEYS.values())  # what the run page draws


def write_report(path: str | Path) -> Path:
    """Write `report.html` (and its PNGs) into the run or ladder directory `path`; return its path."""
    path = Path(path)
    if not path.is_dir():
        raise TrainerError(f"{path}: no such directory (expected a run or a ladder directory)")
    if LadderDir(path).is_ladder():
        body, title = ladder_page(path)
    elif RunDir(path).is_finished():
        body, title = _run_page(path)
    else:
        raise TrainerError(f"{path} is neither a run ({RunDir.METRICS}) nor a ladder ({LadderDir.SUMMARY})")
    return Directory(path).write_report(H.document(title, body))


# ---------------------------------------------------------------------------- run page


def _load_scores(run: RunDir) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """{part: {column: array}} for the scores files that are there, and notes on those that are not."""
    scores, notes = {}, []
    for part in RunDir.PARTS:
        f = run.scores_path(part)
        try:
            t = run.scores(part)
        except (OSError, ValueError) as e:  # a torn or foreign file (ArrowInvalid): say so, draw the rest
            notes.append(f"cannot read {f.name}: {e}")
            continue
        if t is None:
            notes.append(f"{f.name} is not in this run: the ROC, reliability and alpha plots of "
                         f"{H.PART_TITLES[part]} need it (runs written before per-row scores were saved).")
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
    figs = H.Figures(run)
    model = metrics.get("model", config.get("model", "?"))
    parts = [p for p in RunDir.PARTS if p in metrics]
    scenes = _scene_keys(metrics, parts)
    title = f"Run report: {model}" + ("" if run.name == model else f" ({run.name})")

    body = [f"<h1>{H.e(title)}</h1>", _run_meta(run, model, config), H.data_quality(config.get("warehouse"), run)]
    body += [H.note(n) for n in notes]

    body.append("<h2>Headline metrics</h2>")
    body.append(_headline_table(metrics, parts))
    body.append("<h2>Split</h2>")
    body.append(_split_table(metrics, parts, rd))

    body.append("<h2>Per scene</h2>")
    body.append(_per_scene_table(metrics, parts, scenes))
    if scores:
        body.append(figs.img("roc", roc_figure(scores, metrics, scenes), "ROC curve per scene"))
        bins = next((metrics[p].get("calibration", {}).get("ece_bins") for p in parts), None) or M.ECE_BINS
        body.append("<h3>Reliability per scene</h3>")
        body.append(f"<p>Equal-mass bins ({bins} per panel): each point is one bin's mean predicted "
                    "probability against its observed click rate; on the diagonal is perfect calibration.</p>")
        body.append(figs.img("reliability", reliability_figure(scores, metrics, scenes, bins),
                             "reliability diagram per scene"))
        if "test" in scores and "probability_raw" in scores["test"]:
            body.append("<p>The dotted grey line is the test rows before calibration.</p>")
    else:
        body.append(H.note("No per-row scores in this run: ROC and reliability diagrams are left out."))

    body.append(_calibration_section(metrics, parts, scenes))
    body.append("<h2>Cold start</h2>")
    body.append("<p>Buckets count a user's (item's) impressions on the training days: "
                "zero = 0, few = 1..4, warm = 5 or more. Bars start at chance (0.5); n is on each bar.</p>")
    body.append(figs.img("cold_start", cold_figure(metrics, parts), "AUC by cold-start bucket"))
    body.append(_cold_table(metrics, parts))

    alpha_html = _alpha_section(metrics, scores, figs, scenes)
    if alpha_html:
        body.append("<h2>Fusion gate alpha</h2>")
        body += alpha_html

    body.append("<h2>Training</h2>")
    if history:
        body.append(figs.img("history", history_figure(history), "train loss and validation AUC per epoch"))
        body.append(_history_table(history))
    else:
        body.append(H.note("history.json is not in this run: no learning curves."))
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
    return H.table("run", ["field", "value"], [[k, H.Html(f"<code>{H.e(v)}</code>") if k in ("run", "table") else str(v)]
                                               for k, v in rows])


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


def _headline_table(metrics: dict, parts: list[str]) -> str:
    header = ["split", "n", "AUC", "GAUC", "logloss", "ECE", "mean predicted", "observed rate"]
    rows = []
    for p in parts:
        m, c = metrics[p], H.calibration(metrics[p])
        rows.append([H.PART_TITLES[p], H.count(m.get("n")), M.fmt(m.get("auc")), M.fmt(m.get("gauc")),
                     M.fmt(m.get("logloss")), M.fmt(c.get("ece")), M.fmt(c.get("mean_predicted")),
                     M.fmt(c.get("observed_rate"))])
    out = H.table("headline", header, rows)
    bins = {H.calibration(metrics[p]).get("ece_bins") for p in parts} - {None}
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
        rows.append([H.PART_TITLES.get(p, p), ", ".join(days) or "-", len(days),
                     H.count(n) if n is not None else "not recorded"])
    return H.table("split", ["part", "days", "day count", "rows"], rows)


def _per_scene_table(metrics: dict, parts: list[str], scenes: list[str]) -> str:
    header = ["split", "scene", "n", "AUC", "ECE", "mean predicted", "observed rate"]
    rows = []
    for p in parts:
        per = H.calibration(metrics[p]).get("per_scene", {})
        for s in scenes:
            c = per.get(s, {})
            rows.append([H.PART_TITLES[p], s, H.count(c.get("n")), M.fmt(metrics[p]["per_scene_auc"].get(s)),
                         M.fmt(c.get("ece")), M.fmt(c.get("mean_predicted")), M.fmt(c.get("observed_rate"))])
    return H.table("per-scene", header, rows)


def _calibration_section(metrics: dict, parts: list[str], scenes: list[str]) -> str:
    """Before and after the run's per-scene calibration (fitted on the validation rows)."""
    effect = {p: H.calibration(metrics[p]) for p in parts if "before" in H.calibration(metrics[p])}
    if not effect:
        return "<h2>Calibration</h2>" + H.note("This run predates per-scene calibration.")
    method = next(iter(effect.values())).get("method")
    header = ["split", "scene", "n", "NE before", "NE after", "ECE before", "ECE after",
              "predicted/observed before", "predicted/observed after"]
    rows = []
    for p, c in effect.items():
        for s in [None, *scenes]:
            b = c["before"] if s is None else c["before"]["per_scene"].get(s, {})
            a = c["after"] if s is None else c["after"]["per_scene"].get(s, {})
            rows.append([H.PART_TITLES[p], "all" if s is None else s, H.count(b.get("n")), M.fmt(b.get("ne")),
                         M.fmt(a.get("ne")), M.fmt(b.get("ece")), M.fmt(a.get("ece")),
                         M.fmt(b.get("predicted_over_observed")), M.fmt(a.get("predicted_over_observed"))])
    return (f"<h2>Calibration</h2><p>Method: {H.e(method)}, one map per scene fitted on the validation rows "
            "(so validation's after is in-sample; test's is not). NE is logloss over the entropy of the "
            "training click rate.</p>" + H.table("calibration", header, rows))


def _cold_table(metrics: dict, parts: list[str]) -> str:
    header = ["side", "bucket"] + [f"{H.PART_TITLES[p]} {k}" for p in parts for k in ("n", "AUC")]
    rows = []
    for side in ("user", "item"):
        for b in COLD_BUCKETS:
            row = [side, b]
            for p in parts:
                cell = metrics[p]["cold_start"][side].get(b, {})
                row += [H.count(cell.get("n")), M.fmt(cell.get("auc"))]
            rows.append(row)
    return H.table("cold-start", header, rows)


def _history_table(history: list[dict]) -> str:
    rows = [[h.get("epoch"), M.fmt(h.get("train_loss")), M.fmt(h.get("val_auc")),
             H.count(h.get("samples_per_s"))] for h in history]
    return H.table("history", ["epoch", "train loss", "validation AUC", "samples/s"], rows)


def _alpha_section(metrics: dict, scores: dict, figs: H.Figures, scenes: list[str]) -> list[str]:
    """Distribution of fusion's per-row gate by cold bucket and scene; [] for models without one."""
    summary = {p: metrics.get("extras", {}).get(p, {}).get("alpha") for p in RunDir.PARTS}
    with_alpha = {p: s for p, s in scores.items() if "alpha" in s}
    if not any(summary.values()) and not with_alpha:
        return []
    out = [("<p>alpha in (0, 1) is the share of each row's logit that comes from the content "
            "(text) tower; the rest comes from the id and feature backbone.</p>")]
    if with_alpha:
        part = "test" if "test" in with_alpha else next(iter(with_alpha))
        out.append(figs.img("alpha", alpha_figure(with_alpha[part], scenes, H.PART_TITLES[part]),
                            "distribution of alpha by cold-start bucket and by scene"))
    else:
        out.append(H.note("The scores files carry no alpha column: only the means from metrics.json are shown."))
    parts = [p for p in RunDir.PARTS if summary.get(p)]
    if parts:
        slices = [("all", lambda a: a.get("mean"))]
        for side, key in COLD_KEYS.items():
            slices += [(f"{side} {b}", lambda a, k=key, b=b: a.get(k, {}).get(b)) for b in COLD_BUCKETS]
        slices += [(f"scene {sc}", lambda a, sc=sc: a.get("per_scene", {}).get(sc)) for sc in scenes]
        rows = [[name, *(M.fmt(get(summary[p])) for p in parts)] for name, get in slices]
        out.append(H.table("alpha", ["slice", *(f"{H.PART_TITLES[p]} mean alpha" for p in parts)], rows))
    return out
