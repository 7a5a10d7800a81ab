"""Write AntM2C-shaped CSV parts, truth.parquet, bad.parquet and manifest.json.

Everything random is drawn from one numpy Generator in a fixed order before
anything is written, so a seed gives byte-identical files.
"""

import csv
import datetime as dt
import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from m2ctr.schema import DEEP_FEATURES, N_DEEP_FEATURES, RAW_REQUIRED, REJECT_REASONS, SCENES
from synthetic.impressions import (
    FEATURE_LIMIT,
    MAX_COUNT,
    SCENE_BASE_CTR,
    Impressions,
    sample_impressions,
)
from synthetic.lang import LANGUAGES
from synthetic.vocab import TOPIC_NAMES
from synthetic.world import make_world

N_DEEP = N_DEEP_FEATURES
BASE_COLUMNS = list(RAW_REQUIRED)  # every raw column but the deep features, in file order
DEEP_COLUMNS = list(DEEP_FEATURES)
BAD_KINDS = REJECT_REASONS
BAD_LOG_TIMES = ["not-a-time", "2024-13-45 99:00:00", "yesterday", "2024/2/30 25:61",
                 "31.12.2024", "12:00"]
BAD_LABELS = ["2", "yes", "-1", "clicked"]
BAD_SCENES = [str(max(SCENES) + 3), "x", "-1", str(max(SCENES) + 1)]  # none of them a declared scene
EXTRA_FIELDS = ["extra", "0.5", "", "tail"]
TITLE_FIELD = BASE_COLUMNS.index("item_title")
CHUNK_ROWS = 50_000
OUTPUT_GLOBS = ("part-*.csv", "truth.parquet", "bad.parquet", "manifest.json")


@dataclass(frozen=True)
class Config:
    rows: int = 200_000
    days: int = 14
    seed: int = 0
    start: dt.date = dt.date(2024, 3, 1)
    header: bool = True
    deep_features: int = N_DEEP
    parts: int = 4
    bad_rate: float = 0.02
    short_time_share: float = 0.3
    users: int | None = None  # None: rows // 10
    items: int | None = None  # None: rows // 40
    lang: str = "en"  # language of the text; the world is the same in every language

    @property
    def n_users(self) -> int:
        return self.users if self.users is not None else max(50, self.rows // 10)

    @property
    def n_items(self) -> int:
        return self.items if self.items is not None else max(20, self.rows // 40)

    @property
    def columns(self) -> list[str]:
        return BASE_COLUMNS + DEEP_COLUMNS[: self.deep_features]


def _days(cfg: Config) -> np.ndarray:
    """The dates of the logs' days, by day index."""
    return np.array([cfg.start + dt.timedelta(days=d) for d in range(cfg.days)], dtype=object)


def _time_strings(cfg: Config, imp: Impressions) -> np.ndarray:
    dates = _days(cfg)
    long_day = np.array([f"{d:%Y-%m-%d} " for d in dates], dtype=object)
    short_day = np.array([f"{d.year}/{d.month}/{d.day} " for d in dates], dtype=object)
    long_tod = np.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
                         for s in range(86400)], dtype=object)
    short_tod = np.array([f"{s // 3600}:{s // 60 % 60:02d}" for s in range(86400)],
                         dtype=object)
    return np.where(imp.short_form, short_day[imp.day] + short_tod[imp.second],
                    long_day[imp.day] + long_tod[imp.second])


def _pick(rng: np.random.Generator, values: list[str], n: int) -> np.ndarray:
    return np.array(values, dtype=object)[rng.integers(0, len(values), size=n)]


def _plant_defects(rng, cfg: Config, fields: dict[str, np.ndarray]):
    """Give ~bad_rate of the records exactly one defect each, every kind in turn."""
    n_bad = round(cfg.rows * cfg.bad_rate)
    bad_rows = np.sort(rng.choice(cfg.rows, size=n_bad, replace=False))
    kind = rng.permutation(np.arange(n_bad) % len(BAD_KINDS))
    kind_of = np.full(cfg.rows, -1, dtype=np.int64)
    kind_of[bad_rows] = kind

    def rows_of(name):
        return bad_rows[kind == BAD_KINDS.index(name)]

    r = rows_of("bad_log_time")
    fields["log_time"][r] = _pick(rng, BAD_LOG_TIMES, len(r))
    r = rows_of("bad_label")
    fields["label"][r] = _pick(rng, BAD_LABELS, len(r))
    r = rows_of("bad_scene")
    fields["scene"][r] = _pick(rng, BAD_SCENES, len(r))
    fields["user_id"][rows_of("missing_user_id")] = ""
    fields["item_id"][rows_of("missing_item_id")] = ""
    n_fields = len(cfg.columns)
    # Truncation drops 1..3 trailing fields (never all of them).
    drop = np.zeros(cfg.rows, dtype=np.int64)
    r = rows_of("too_few_fields")
    drop[r] = np.minimum(rng.integers(1, 4, size=len(r)), n_fields - 1)
    extra: dict[int, list[str]] = {}
    for g in rows_of("too_many_fields").tolist():
        extra[g] = _pick(rng, EXTRA_FIELDS, int(rng.integers(1, 4))).tolist()
    return kind_of, drop, extra


def _clear_outputs(out: Path) -> None:
    """Remove files of an earlier run so no stale part survives a smaller run."""
    for pattern in OUTPUT_GLOBS:
        for p in out.glob(pattern):
            p.unlink()


@functools.cache
def _number_text() -> tuple[np.ndarray, np.ndarray]:
    """Text of every value a deep feature can take (4-place decimals within the limit, and
    counts): looking cells up is much faster than formatting 27 numbers per record."""
    steps = int(FEATURE_LIMIT * 10_000)
    decimals = np.array([repr(k / 10_000) for k in range(-steps, steps + 1)], dtype=object)
    counts = np.array([str(k) for k in range(MAX_COUNT + 1)], dtype=object)
    return decimals, counts


def _deep_cells(x: np.ndarray) -> np.ndarray:
    """Deep features as csv cells: decimals, integers for the count-like ones, '' when empty."""
    decimals, counts = _number_text()
    x = x.copy()
    empty = np.isnan(x)
    x[empty] = 0.0
    cells = np.empty(x.shape, dtype=object)
    steps = np.rint(x[:, :20] * 10_000).astype(np.int64)
    cells[:, :20] = decimals[steps + int(FEATURE_LIMIT * 10_000)]
    cells[:, 20:] = counts[x[:, 20:].astype(np.int64)]
    cells[empty] = ""
    return cells


def _write_parts(cfg, out, fields, deep, part_rows, drop, extra, title_newlines, progress):
    """Write each part with the csv module (RFC 4180: minimal quoting, doubled quotes).

    Returns, per record, its part, record number and first physical line."""
    n_text = len(BASE_COLUMNS)
    columns = cfg.columns
    record = np.empty(cfg.rows, dtype=np.int64)
    line = np.empty(cfg.rows, dtype=np.int64)
    bar = tqdm(total=cfg.rows, desc="writing", unit="rows", disable=not progress)
    for p, rows in enumerate(part_rows):
        path = out / f"part-{p:05d}.csv"
        lines_per_record = 1 + title_newlines[rows]
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            if cfg.header:
                writer.writerow(columns)
            for lo in range(0, len(rows), CHUNK_ROWS):
                idx = rows[lo:lo + CHUNK_ROWS]
                table = np.empty((len(idx), len(columns)), dtype=object)
                for c, name in enumerate(BASE_COLUMNS):
                    table[:, c] = fields[name][idx]
                if cfg.deep_features:
                    table[:, n_text:] = _deep_cells(deep[idx, : cfg.deep_features])
                out_rows = table.tolist()
                for j in np.flatnonzero(drop[idx] > 0).tolist():
                    out_rows[j] = out_rows[j][: len(columns) - drop[idx[j]]]
                    if len(out_rows[j]) <= TITLE_FIELD:
                        lines_per_record[lo + j] = 1
                for j, g in enumerate(idx.tolist()):
                    if g in extra:
                        out_rows[j] = out_rows[j] + extra[g]
                writer.writerows(out_rows)
                bar.update(len(idx))
        record[rows] = np.arange(len(rows))
        first = 1 + int(cfg.header)
        line[rows] = first + np.concatenate([[0], np.cumsum(lines_per_record)[:-1]])
    bar.close()
    return record, line


def _cold_start(clean: pd.DataFrame, key: str) -> list[dict]:
    """Per day: share of distinct ids (and impressions) with no clean record on earlier days."""
    first_seen = clean.groupby(key)["day"].transform("min")
    new = clean["day"] == first_seen
    per_day = []
    for d, g in clean.assign(new=new).groupby("day"):
        ids = g.drop_duplicates(key)
        per_day.append({"day": int(d), "ids": len(ids),
                        "new_id_rate": round(float(ids["new"].mean()), 4),
                        "new_impression_rate": round(float(g["new"].mean()), 4)})
    return per_day


def generate(cfg: Config, out: Path, progress: bool = False) -> dict:
    rng = np.random.default_rng(cfg.seed)
    if cfg.lang not in LANGUAGES:
        raise ValueError(f"unknown language {cfg.lang!r}; expected one of {sorted(LANGUAGES)}")
    world = make_world(rng, cfg.n_users, cfg.n_items, cfg.days, LANGUAGES[cfg.lang])
    imp = sample_impressions(rng, world, cfg.rows, cfg.days, cfg.short_time_share,
                             cfg.deep_features)
    users, items = world.users, world.items
    fields = {
        "user_id": users.ids[imp.user],
        "item_id": items.ids[imp.item],
        "log_time": _time_strings(cfg, imp),
        "label": np.array(["0", "1"], dtype=object)[imp.label],
        "bill_entity_seq": users.bill_seq[imp.user],
        "service_entity_seq": users.service_seq[imp.user],
        "query_entity_seq": users.query_seq[imp.user],
        "item_entity_names": items.entity_names[imp.item],
        "item_title": items.title[imp.item],
        "scene": np.array([str(s) for s in SCENES], dtype=object)[items.scene[imp.item]],
    }
    log_time_written = fields["log_time"].copy()
    kind_of, drop, extra = _plant_defects(rng, cfg, fields)
    # Records go to parts at random; within a part they are in time order.
    part_of = rng.integers(0, cfg.parts, size=cfg.rows)
    order = np.lexsort((imp.second, imp.day, part_of))
    part_rows = np.split(order, np.cumsum(np.bincount(part_of, minlength=cfg.parts))[:-1])

    out.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out)
    record, line = _write_parts(cfg, out, fields, imp.deep, part_rows, drop, extra,
                                items.title_newlines[imp.item], progress)
    imp.deep = None  # written; the truth does not need it, and at 10M rows it is 2 GB
    part_name = np.array([f"part-{p:05d}.csv" for p in range(cfg.parts)], dtype=object)

    clean_mask = kind_of < 0
    date0 = np.datetime64(cfg.start.isoformat(), "D")
    dates = date0 + imp.day.astype("timedelta64[D]")
    log_ts = dates.astype("datetime64[s]") + imp.second.astype("timedelta64[s]")
    # clean records in file order (part, then record number): each column is gathered once,
    # and string columns keep pointing at the strings already made instead of copying one per row
    c = np.flatnonzero(clean_mask)
    c = c[np.lexsort((record[c], part_of[c]))]
    truth = pd.DataFrame({
        "user_id": fields["user_id"][c],
        "item_id": fields["item_id"][c],
        "log_time": log_time_written[c],
        "log_ts": log_ts[c],
        "date": _days(cfg)[imp.day[c]],
        "scene": np.asarray(SCENES, np.int32)[items.scene[imp.item[c]]],
        "label": imp.label[c].astype(np.int32),
        "p_click": imp.p_click[c],
        "item_topic": np.array(TOPIC_NAMES, dtype=object)[items.topic[imp.item[c]]],
        "affinity": imp.affinity[c].astype(np.int32),
        "part": part_name[part_of[c]],
        "record": record[c],
        "line": line[c],
    })
    truth.to_parquet(out / "truth.parquet", index=False)
    del truth  # written; the manifest needs only the clean labels

    b = np.flatnonzero(~clean_mask)
    bad = pd.DataFrame({
        "part": part_name[part_of[b]].astype(str),
        "record": record[b],
        "line": line[b],
        "reject_reason": np.array(BAD_KINDS, dtype=object)[kind_of[b]].astype(str),
    }).sort_values(["part", "record"], ignore_index=True)
    bad.to_parquet(out / "bad.parquet", index=False)

    manifest = _manifest(cfg, imp, items, part_of, kind_of)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _manifest(cfg: Config, imp: Impressions, items, part_of, kind_of) -> dict:
    clean_mask = kind_of < 0
    by_kind = {k: int((kind_of == i).sum()) for i, k in enumerate(BAD_KINDS)}
    parts = []
    for p in range(cfg.parts):
        in_part = part_of == p
        parts.append({"file": f"part-{p:05d}.csv", "records": int(in_part.sum()),
                      "clean": int((in_part & clean_mask).sum()),
                      "bad": int((in_part & ~clean_mask).sum())})
    clean = pd.DataFrame({"day": imp.day[clean_mask], "user": imp.user[clean_mask],
                          "item": imp.item[clean_mask]})
    users_cs = _cold_start(clean, "user")
    items_cs = _cold_start(clean, "item")
    first = cfg.start.isoformat()
    last = (cfg.start + dt.timedelta(days=cfg.days - 1)).isoformat()
    scene = items.scene[imp.item]
    args = asdict(cfg)
    args["start"] = first
    if cfg.lang == "en":  # English manifests stay byte-identical to those written before --lang
        del args["lang"]
    return {
        "seed": cfg.seed,
        "args": args,
        "header": cfg.header,
        "columns": cfg.columns,
        "records": cfg.rows,
        "clean": int(clean_mask.sum()),
        "bad": {"total": int((~clean_mask).sum()), "by_kind": by_kind},
        "parts": parts,
        "date_range": {"start": first, "end": last, "days": cfg.days},
        "records_per_day": np.bincount(imp.day, minlength=cfg.days).tolist(),
        "users": int(np.unique(imp.user[clean_mask]).size),
        "items": int(np.unique(imp.item[clean_mask]).size),
        "user_population": cfg.n_users,
        "item_population": cfg.n_items,
        "ctr": round(float(imp.label[clean_mask].mean()), 5) if clean_mask.any() else None,
        "scenes": {
            str(value): {"base_ctr": float(SCENE_BASE_CTR[s]),
                         "clean": int((clean_mask & (scene == s)).sum()),
                         "ctr": round(float(imp.label[clean_mask & (scene == s)].mean()), 5)
                         if (clean_mask & (scene == s)).any() else None}
            for s, value in enumerate(SCENES)
        },
        "cold_start": {
            "last_day": last,
            "new_user_rate": users_cs[-1]["new_id_rate"] if users_cs else None,
            "new_item_rate": items_cs[-1]["new_id_rate"] if items_cs else None,
            "users_per_day": users_cs,
            "items_per_day": items_cs,
        },
    }
