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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from m2ctr.schema import ITEM_FEATURES, PAIR_FEATURES, SCENES, USER_FEATURES
from m2ctr.warehouse import ITEM_SNAPSHOT, PAIR_SNAPSHOT, USER_SNAPSHOT, schema_dir, table_path
from trainer.table import TrainerError

# model -> (its key columns, the training_samples columns it holds)
SNAPSHOT_MODELS = {
    USER_SNAPSHOT: (("user_id",), USER_FEATURES),
    ITEM_SNAPSHOT: (("item_id",), ITEM_FEATURES),
    PAIR_SNAPSHOT: (("user_id", "item_id"), PAIR_FEATURES),
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
    depends on the scene (the smoothed CTRs) and [n_ids] where it does not; `cold[c]` [n_scenes].
    `codes` maps an id to its row (a dict: a request looks up ~100 ids, where pandas' per-call
    overhead would dominate)."""

    codes: dict[str, int]
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
        codes = {} if rest else dict(zip(ids[:, 0].tolist(), range(n)))
        if rest or len(codes) != n or (ids != ids[:, :1]).any() or (scenes != np.asarray(SCENES)).any():
            raise TrainerError(f"snapshot table {path} should hold exactly one row per {key} and scene")
        values = {}
        for c, v in _values(known, columns).items():
            v = v.reshape(n, n_scenes)
            values[c] = v if (v != v[:, :1]).any() else np.ascontiguousarray(v[:, 0])
        return cls(codes, values, _values(cold, columns))

    def code(self, ids) -> np.ndarray:
        """Each id's row, -1 for an id without history."""
        get = self.codes.get
        return np.fromiter((get(i, -1) for i in ids), np.int64, len(ids))

    def take(self, at: np.ndarray, scene_pos: np.ndarray) -> dict[str, np.ndarray]:
        """The values of rows `at` in scenes `scene_pos`; the no-history values where `at` is -1."""
        if not self.codes:  # nobody has history yet (a warehouse of one day)
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
        return len(self.codes)


@dataclass
class PairFeatures:
    """User-item pairs keyed by `user row * n_items + item row` in the entity tables (a pair with
    history has a user and an item with history), sorted: 8 bytes a pair, looked up by bisection."""

    keys: np.ndarray
    n_items: int
    values: dict[str, np.ndarray]
    cold: dict[str, np.ndarray]

    @classmethod
    def from_table(cls, table: pa.Table, columns, path: Path, users: EntityFeatures,
                   items: EntityFeatures) -> PairFeatures:
        null = pc.or_(table.column("user_id").is_null(), table.column("item_id").is_null())
        cold, known = table.filter(null), table.filter(pc.invert(null))
        if len(cold) != 1:
            raise TrainerError(f"snapshot table {path} should hold one row with a null user_id and item_id "
                               f"(the no-history values), holds {len(cold)}")
        u = users.code(known.column("user_id").to_pylist())
        i = items.code(known.column("item_id").to_pylist())
        if (u < 0).any() or (i < 0).any():
            raise TrainerError(f"snapshot table {path} holds pairs of users or items without history in the "
                               "user and item snapshots (tables of different builds? run `make features`)")
        key = u * len(items) + i
        order = np.argsort(key, kind="stable")
        keys = key[order]
        if (keys[1:] == keys[:-1]).any():
            raise TrainerError(f"snapshot table {path} should hold exactly one row per user_id and item_id")
        return cls(keys, len(items), {c: v[order] for c, v in _values(known, columns).items()},
                   {c: v[0] for c, v in _values(cold, columns).items()})

    def take(self, user: int, items: np.ndarray) -> dict[str, np.ndarray]:
        """The values of the pairs (user row, item rows), or the no-history values."""
        if user < 0 or not len(self.keys):
            return {c: np.full(len(items), v) for c, v in self.cold.items()}
        key = user * self.n_items + items
        at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        unknown = (items < 0) | (self.keys[at] != key)
        return {c: np.where(unknown, self.cold[c], v[at]) for c, v in self.values.items()}

    def __len__(self) -> int:
        return len(self.keys)


class Snapshot:
    """The three snapshot tables of one warehouse schema, and their common as-of date."""

    def __init__(self, warehouse_dir: str | Path | None = None, schema: str | None = None):
        self.path = schema_dir(warehouse_dir, schema)
        tables, days = {}, {}
        for model, (keys, columns) in SNAPSHOT_MODELS.items():
            path = table_path(model, warehouse_dir, schema)
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
        self.pair = PairFeatures.from_table(tables[pair], p_cols, self.path / pair, self.user, self.item)
        self.scene_pos = np.full(max(SCENES) + 1, -1)  # scene -> its position in SCENES
        self.scene_pos[list(SCENES)] = np.arange(len(SCENES))

    def history(self, user_id: str, item_ids: np.ndarray, scenes: np.ndarray) -> dict[str, np.ndarray]:
        """Every history feature of the rows (user_id, item_ids[k], scenes[k]), as training_samples
        would give them on `as_of`."""
        pos = self.scene_pos[scenes]  # the request model admits SCENES only
        user = self.user.code([user_id])[0]
        items = self.item.code(item_ids)
        return {**self.user.take(np.full(len(items), user), pos), **self.item.take(items, pos),
                **self.pair.take(user, items)}

    def sizes(self) -> dict[str, int]:
        return {"users": len(self.user), "items": len(self.item), "pairs": len(self.pair)}
