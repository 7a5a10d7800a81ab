"""A serving snapshot in the warehouse's layout, made without Spark, for tests and benchmarks.

The rows of day D of a training_samples-shaped table (e.g. `synthetic.sample_table`) hold every
user, item and pair feature as of the start of D, so they give the snapshot as of D for the ids
seen that day. The real snapshot comes from the warehouse (warehouse/models/serving/).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import orc

from m2ctr.schema import ITEM_FEATURES, PAIR_FEATURES, SCENES, USER_FEATURES
from serving.snapshot import SNAPSHOT_MODELS

USER_MODEL, ITEM_MODEL, PAIR_MODEL = SNAPSHOT_MODELS


def _entity_rows(day: pa.Table, key: str, p: str, columns, scene: int, fill_unseen: bool) -> list[dict]:
    """One side's rows of one scene: every id with history that day, then the null-id row."""
    by_id, no_history = defaultdict(dict), {}
    for r in day.to_pylist():
        if r[f"{p}_has_history"]:
            by_id[r[key]][r["scene"]] = r
        else:
            no_history[r["scene"]] = r

    def values(per_scene: dict) -> dict:
        if scene in per_scene:
            return {c: per_scene[scene][c] for c in columns}
        other = next(iter(per_scene.values()), {})
        # only the smoothed CTRs depend on the scene (its prior); the rest is the same in every scene
        return {c: other.get(c, 0) if fill_unseen or not c.endswith("_smooth") else float("nan")
                for c in columns}

    rows = [{key: ident, f"{p}_last_hist_date": next(iter(per_scene.values()))[f"{p}_last_hist_date"],
             **values(per_scene)} for ident, per_scene in sorted(by_id.items())]
    rows.append({key: None, f"{p}_last_hist_date": None, **values(no_history)})
    return rows


def write_sample_snapshot(day: pa.Table, as_of: str, out: Path, fill_unseen: bool = False) -> Path:
    """The warehouse's snapshot tables (one row per id and scene, one null-id row per scene with the
    no-history values; pairs with one null row) from the rows of day `as_of`, which hold every
    feature as of its start. `out` is the schema's directory, e.g. `<warehouse>/m2ctr.db`.

    Ids that are new that day are left out, as the warehouse leaves them out: they take the
    no-history rows. Smoothed CTRs of an (id, scene) that day never shows are NaN, so a lookup of
    the wrong scene cannot pass unnoticed; with `fill_unseen` (benchmarks, whose requests mix ids
    and scenes freely) they are another scene's values: finite, not exact."""
    date = pa.array([dt.date.fromisoformat(as_of)], pa.date32())[0]

    def write(rows: list[dict], directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows).append_column("date", pa.array([date] * len(rows)))
        orc.write_table(table, str(directory / "part-0.orc"))

    for model, key, p, columns in ((USER_MODEL, "user_id", "u", USER_FEATURES),
                                   (ITEM_MODEL, "item_id", "i", ITEM_FEATURES)):
        for s in SCENES:
            write(_entity_rows(day, key, p, columns, s, fill_unseen), out / model / f"scene={s}")
    pairs = {(r["user_id"], r["item_id"]): {c: r[c] for c in (*PAIR_FEATURES, "ui_last_hist_date")}
             for r in day.filter(pc.equal(day.column("ui_has_history"), 1)).to_pylist()}
    rows = [{"user_id": u, "item_id": i, **v} for (u, i), v in sorted(pairs.items())]
    rows.append({"user_id": None, "item_id": None, **dict.fromkeys(PAIR_FEATURES, 0),
                 "ui_last_hist_date": None})
    write(rows, out / PAIR_MODEL)
    return out
