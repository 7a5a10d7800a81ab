"""The online feature snapshot, read once from the warehouse and held in memory, indexed.

The warehouse writes the state of every user, item and user-item pair as of the start of the day
after the last processed day (`features_as_of`), with the column names of training_samples and the
values its macros give a row of that day: the entity tables per (id, scene), because the smoothed
CTRs pull toward the row's scene prior, the pair table per (user_id, item_id). One row per scene
(per table) with a null id holds the values of an id without history (0 counts, has_history 0,
smoothed CTRs = the scene prior), so an unknown id gets exactly what training_samples gives it.

Here a request only looks values up: no feature is computed in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from m2ctr.schema import ITEM_FEATURES, PAIR_FEATURES, SCENES, USER_FEATURES

from ..data import TrainerError

# model -> (its key columns, the training_samples columns it holds)
SNAPSHOT_MODELS = {
    "user_features_snapshot": (("user_id",), USER_FEATURES),
    "item_features_snapshot": (("item_id",), ITEM_FEATURES),
    "user_item_snapshot": (("user_id", "item_id"), PAIR_FEATURES),
}
AS_OF_COLUMN = "date"


def read_orc(path: Path, columns: list[str]) -> pa.Table:
    """Every ORC file under `path` (hive partitions, if any, become columns)."""
    if not path.is_dir():
        raise TrainerError(f"snapshot table not found: {path} (build the warehouse with `make features`, "
                           "which writes the serving snapshot, or pass --warehouse DIR)")
    try:
        data = ds.dataset(str(path), format="orc", partitioning="hive")
        missing = [c for c in columns if c not in data.schema.names]
        if missing:
            raise TrainerError(f"snapshot table {path} lacks column(s): {', '.join(missing)} "
                               "(built by an older warehouse? rebuild it with `make features`)")
        return data.to_table(columns=columns)
    except (pa.ArrowInvalid, OSError) as e:
        raise TrainerError(f"cannot read {path} as an ORC table: {e}") from None


def _as_of(table: pa.Table, path: Path) -> str:
    days = pc.unique(table.column(AS_OF_COLUMN).cast(pa.string())).to_pylist()
    if len(days) != 1 or days[0] is None:
        raise TrainerError(f"snapshot table {path} should hold one as-of {AS_OF_COLUMN}, holds {days}")
    return days[0]


def _values(table: pa.Table, columns) -> dict[str, np.ndarray]:
    return {c: table.column(c).to_numpy() for c in columns}


@dataclass
class EntityFeatures:
    """One side (user or item) per (id, scene): `values[c]` is [n_ids, n_scenes] where the column
    depends on the scene (the smoothed CTRs) and [n_ids] where it does not; `cold[c]` [n_scenes]."""

    index: pd.Index
    values: dict[str, np.ndarray]
    cold: dict[str, np.ndarray]

    @classmethod
    def from_table(cls, table: pa.Table, key: str, columns, path: Path) -> EntityFeatures:
        n_scenes = len(SCENES)
        table = table.sort_by([(key, "ascending"), ("scene", "ascending")])  # nulls (cold rows) last
        null = table.column(key).is_null()
        cold, known = table.filter(null), table.filter(pc.invert(null))
        cold_scenes = cold.column("scene").to_pylist()
        if cold_scenes != list(SCENES):
            raise TrainerError(f"snapshot table {path} should hold one row per scene {list(SCENES)} with "
                               f"a null {key} (the no-history values), holds scenes {cold_scenes}")
        n, rest = divmod(len(known), n_scenes)
        ids = known.column(key).to_numpy(zero_copy_only=False)
        scenes = known.column("scene").to_numpy()
        if not rest:
            ids, scenes = ids.reshape(n, n_scenes), scenes.reshape(n, n_scenes)
        if (rest or (ids != ids[:, :1]).any() or (scenes != np.asarray(SCENES)).any()
                or not pd.Index(ids[:, 0]).is_unique):
            raise TrainerError(f"snapshot table {path} should hold exactly one row per {key} and scene")
        values = {}
        for c, v in _values(known, columns).items():
            v = v.reshape(n, n_scenes)
            values[c] = v if (v != v[:, :1]).any() else np.ascontiguousarray(v[:, 0])
        return cls(pd.Index(ids[:, 0], dtype=object), values, _values(cold, columns))

    def lookup(self, ids: np.ndarray, scene_pos: np.ndarray) -> dict[str, np.ndarray]:
        """Each row's values: of its id and scene, or the no-history values of its scene."""
        return self.take(self.index.get_indexer(ids), scene_pos)

    def lookup_one(self, ident: str, scene_pos: np.ndarray) -> dict[str, np.ndarray]:
        """The values of one id (the request's user) in each row's scene."""
        at = self.index.get_indexer([ident])[0]
        return self.take(np.full(len(scene_pos), at), scene_pos)

    def take(self, at: np.ndarray, scene_pos: np.ndarray) -> dict[str, np.ndarray]:
        if not len(self.index):  # nobody has history yet (a warehouse of one day)
            return {c: v[scene_pos] for c, v in self.cold.items()}
        unknown = at < 0
        out = {}
        for c, v in self.values.items():
            got = v[at, scene_pos] if v.ndim == 2 else v[at]
            if unknown.any():
                got[unknown] = self.cold[c][scene_pos[unknown]]  # fancy indexing made a copy
            out[c] = got
        return out

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class PairFeatures:
    """User-item pairs grouped by user (a request has one user): the user's rows are
    `starts[u]:starts[u + 1]`, their item ids `items` in that range."""

    users: pd.Index
    starts: np.ndarray
    items: np.ndarray
    values: dict[str, np.ndarray]
    cold: dict[str, np.ndarray]

    @classmethod
    def from_table(cls, table: pa.Table, columns, path: Path) -> PairFeatures:
        null = pc.or_(table.column("user_id").is_null(), table.column("item_id").is_null())
        cold, known = table.filter(null), table.filter(pc.invert(null))
        if len(cold) != 1:
            raise TrainerError(f"snapshot table {path} should hold one row with a null user_id and item_id "
                               f"(the no-history values), holds {len(cold)}")
        known = known.sort_by([("user_id", "ascending"), ("item_id", "ascending")])
        user = known.column("user_id").to_numpy(zero_copy_only=False)
        item = known.column("item_id").to_numpy(zero_copy_only=False)
        first = np.r_[True, user[1:] != user[:-1]] if len(user) else np.zeros(0, bool)
        if len(user) and not (np.r_[True, item[1:] != item[:-1]] | first).all():
            raise TrainerError(f"snapshot table {path} should hold exactly one row per user_id and item_id")
        starts = np.r_[np.flatnonzero(first), len(user)]
        return cls(pd.Index(user[first], dtype=object), starts, item, _values(known, columns),
                   {c: v[0] for c, v in _values(cold, columns).items()})

    def lookup(self, user_id: str, item_ids: np.ndarray) -> dict[str, np.ndarray]:
        """The values of each pair (user_id, item_ids[k]), or the no-history values."""
        u = self.users.get_indexer([user_id])[0]
        if u < 0:
            return {c: np.full(len(item_ids), v) for c, v in self.cold.items()}
        lo, hi = self.starts[u], self.starts[u + 1]
        found = pd.Index(self.items[lo:hi], dtype=object).get_indexer(item_ids)
        unknown, at = found < 0, lo + np.maximum(found, 0)
        return {c: np.where(unknown, self.cold[c], v[at]) for c, v in self.values.items()}

    def __len__(self) -> int:
        return len(self.items)


class Snapshot:
    """The three snapshot tables of one warehouse schema, and their common as-of date."""

    def __init__(self, warehouse_dir: str | Path, schema: str = "m2ctr"):
        self.path = Path(warehouse_dir) / f"{schema}.db"
        tables, days = {}, {}
        for model, (keys, columns) in SNAPSHOT_MODELS.items():
            path = self.path / model
            scene = () if len(keys) > 1 else ("scene",)
            tables[model] = read_orc(path, [*keys, *scene, AS_OF_COLUMN, *columns])
            days[model] = _as_of(tables[model], path)
        if len(set(days.values())) != 1:
            raise TrainerError(f"snapshot tables under {self.path} are of different days: {days} "
                               "(a build was interrupted? run `make features` again)")
        self.as_of = next(iter(days.values()))
        (user, (_, u_cols)), (item, (_, i_cols)), (pair, (_, p_cols)) = SNAPSHOT_MODELS.items()
        self.user = EntityFeatures.from_table(tables[user], "user_id", u_cols, self.path / user)
        self.item = EntityFeatures.from_table(tables[item], "item_id", i_cols, self.path / item)
        self.pair = PairFeatures.from_table(tables[pair], p_cols, self.path / pair)
        self.scene_pos = np.full(max(SCENES) + 1, -1)  # scene -> its position in SCENES
        self.scene_pos[list(SCENES)] = np.arange(len(SCENES))

    def history(self, user_id: str, item_ids: np.ndarray, scenes: np.ndarray) -> dict[str, np.ndarray]:
        """Every history feature of the rows (user_id, item_ids[k], scenes[k]), as training_samples
        would give them on `as_of`."""
        pos = self.scene_pos[scenes]  # the request model admits SCENES only
        return {**self.user.lookup_one(user_id, pos), **self.item.lookup(item_ids, pos),
                **self.pair.lookup(user_id, item_ids)}

    def sizes(self) -> dict[str, int]:
        return {"users": len(self.user), "items": len(self.item), "pairs": len(self.pair)}
