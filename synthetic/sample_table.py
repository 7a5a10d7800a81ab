"""A small `training_samples` table with planted signal, for tests and benchmarks.

It has the column contract of the warehouse's table (README.md) and its
point-in-time rules (history features of day D count days < D only), without
needing Spark: users and items with their own click propensity and a skewed
popularity, scene base rates and a scene-specific effect of one deep feature,
and new users and items arriving every day, so later days carry unseen ids.
Each user and item has one of `TOPICS`, written into its text. Two effects that
only the text carries for ids without history can be planted: `topic_effect`
scales a per-topic offset of the item's click logit (from -1 to +1), and
`topic_affinity` is added where the user's topic is the item's.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyarrow import orc

from m2ctr.schema import (
    CTR_PRIOR_DEFAULT,
    CTR_SMOOTHING_WEIGHT,
    DENSE_COLUMNS,
    N_DEEP_FEATURES,
    SCENES,
    TEXT_COLUMNS,
    WINDOW_DAYS,
)

N_DEEP, N_SCENE_COUNTS = N_DEEP_FEATURES, len(SCENES)

SCENE_BASE_LOGIT = np.array([-2.4, -1.6, -1.0, -2.0, -0.6])
# deep_features_0 pushes clicks up in some scenes and down in others
SCENE_DEEP_EFFECT = np.array([1.0, -0.8, 0.6, -0.4, 0.0])


TOPICS = np.array(["travel", "food", "games", "finance", "music", "sports", "health", "books"])
TOPIC_OFFSET = np.linspace(-1.0, 1.0, len(TOPICS))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def make_samples(
    rows_per_day: int = 3000, days: int = 6, seed: int = 0, start: str = "2024-03-01",
    n_scenes: int = 5, new_share: float = 0.25, topic_effect: float = 0.0, topic_affinity: float = 0.0,
    arrivals_from: int = 1, topic_days: int | None = None,
) -> tuple[list[pa.Table], np.ndarray]:
    """One Arrow table per day (without the `date` partition column) and the true click probabilities.
    New users and items arrive on every day from `arrivals_from` on (`new_share` of the initial
    population a day). With `topic_days`, the topic effects hold on the first `topic_days` days only:
    text that helps on the training days and stops helping after them."""
    rng = np.random.default_rng(seed)
    n_users = max(rows_per_day // 3, 50)
    n_items = max(rows_per_day // 8, 30)
    # ids born on day 0 form the initial population; each later day adds fresh ones
    arrivals = range(max(arrivals_from, 1), days)
    user_birth = np.concatenate([np.zeros(n_users, int)] + [np.full(int(n_users * new_share), d) for d in arrivals])
    item_birth = np.concatenate([np.zeros(n_items, int)] + [np.full(int(n_items * new_share), d) for d in arrivals])
    user_eff = rng.normal(0, 0.9, len(user_birth))
    item_eff = rng.normal(0, 0.9, len(item_birth))
    item_scene = rng.integers(0, n_scenes, len(item_birth))
    user_pop = rng.pareto(1.5, len(user_birth)) + 1
    item_pop = rng.pareto(1.2, len(item_birth)) + 1

    day0 = dt.date.fromisoformat(start)
    rec = {k: [] for k in ("day", "user", "item", "scene", "label", "deep", "p")}
    for d in range(days):
        def pick(pop, birth, n, d=d):
            alive = np.flatnonzero(birth <= d)
            w = pop[alive] * np.where(birth[alive] == d, 4.0, 1.0)  # newcomers are active on arrival
            return alive[rng.choice(len(alive), n, p=w / w.sum())]

        u = pick(user_pop, user_birth, rows_per_day)
        i = pick(item_pop, item_birth, rows_per_day)
        s = item_scene[i]
        deep = rng.normal(0, 1, (rows_per_day, N_DEEP))
        match = (u % len(TOPICS)) == (i % len(TOPICS))
        topical = topic_days is None or d < topic_days
        p = _sigmoid(SCENE_BASE_LOGIT[s] + user_eff[u] + item_eff[i] + SCENE_DEEP_EFFECT[s] * deep[:, 0]
                     + topical * (topic_effect * TOPIC_OFFSET[i % len(TOPICS)] + topic_affinity * match))
        for k, v in (("day", np.full(rows_per_day, d)), ("user", u), ("item", i), ("scene", s),
                     ("label", (rng.random(rows_per_day) < p).astype(int)), ("deep", deep), ("p", p)):
            rec[k].append(v)
    r = {k: np.concatenate(v) for k, v in rec.items()}

    def history(key, n_keys):
        """Point-in-time counts per row: impressions/clicks on days < D, on D-7..D-1, per scene."""
        imp = np.zeros((days + 1, n_keys))
        clk = np.zeros((days + 1, n_keys))
        imp_s = np.zeros((days + 1, N_SCENE_COUNTS, n_keys))
        clk_s = np.zeros((days + 1, N_SCENE_COUNTS, n_keys))
        np.add.at(imp, (r["day"] + 1, key), 1)
        np.add.at(clk, (r["day"] + 1, key), r["label"])
        np.add.at(imp_s, (r["day"] + 1, r["scene"], key), 1)
        np.add.at(clk_s, (r["day"] + 1, r["scene"], key), r["label"])
        cum_imp, cum_clk = imp.cumsum(0), clk.cumsum(0)  # row D holds days < D
        cum_imp_s, cum_clk_s = imp_s.cumsum(0), clk_s.cumsum(0)
        lag = np.maximum(r["day"] - WINDOW_DAYS, 0)
        seen = cum_imp > 0
        first_day = np.where(seen.any(0), seen.argmax(0) - 1, -1)  # first day with an impression
        last_day = np.full((days + 1, n_keys), -1)
        for d in range(1, days + 1):
            last_day[d] = np.where(imp[d] > 0, d - 1, last_day[d - 1])
        d = r["day"]
        out = {
            "imp_7d": cum_imp[d, key] - cum_imp[lag, key],
            "clk_7d": cum_clk[d, key] - cum_clk[lag, key],
            "imp_cum": cum_imp[d, key],
            "clk_cum": cum_clk[d, key],
            "imp_s": cum_imp_s[d, :, key],
            "clk_s": cum_clk_s[d, :, key],
            "last": last_day[d, key],
            "first": first_day[key],
        }
        out["has"] = (out["imp_cum"] > 0).astype(np.int32)
        out["since"] = np.where(out["has"] == 1, d - out["first"], 0).astype(np.int32)
        return out

    # the warehouse's scene prior (macros/scene_priors.sql): the scene's click rate over the days
    # before the row's day, the default where the scene has none
    scene_imp = np.zeros((days + 1, N_SCENE_COUNTS))
    scene_clk = np.zeros((days + 1, N_SCENE_COUNTS))
    np.add.at(scene_imp, (r["day"] + 1, r["scene"]), 1)
    np.add.at(scene_clk, (r["day"] + 1, r["scene"]), r["label"])
    imp_before, clk_before = scene_imp.cumsum(0), scene_clk.cumsum(0)  # row D holds days < D
    scene_prior = np.where(imp_before > 0, clk_before / np.maximum(imp_before, 1), CTR_PRIOR_DEFAULT)
    weight = CTR_SMOOTHING_WEIGHT
    cols: dict[str, np.ndarray] = {}
    for prefix, key, n_keys in (("u", r["user"], len(user_birth)), ("i", r["item"], len(item_birth))):
        h = history(key, n_keys)
        prior = scene_prior[r["day"], r["scene"]]
        for w in ("7d", "cum"):
            imp, clk = h[f"imp_{w}"], h[f"clk_{w}"]
            cols[f"{prefix}_imp_{w}"] = imp.astype(np.int64)
            cols[f"{prefix}_clk_{w}"] = clk.astype(np.int64)
            cols[f"{prefix}_ctr_{w}"] = np.where(imp > 0, clk / np.maximum(imp, 1), 0.0)
            cols[f"{prefix}_ctr_{w}_smooth"] = (clk + weight * prior) / (imp + weight)
        for s in range(N_SCENE_COUNTS):
            cols[f"{prefix}_imp_cum_s{s}"] = h["imp_s"][:, s].astype(np.int64)
            cols[f"{prefix}_clk_cum_s{s}"] = h["clk_s"][:, s].astype(np.int64)
        cols[f"{prefix}_days_since_first"] = h["since"]
        cols[f"{prefix}_has_history"] = h["has"]
        cols[f"{prefix}_last"] = h["last"]
    pair = r["user"] * len(item_birth) + r["item"]
    _, pair_key = np.unique(pair, return_inverse=True)
    ph = history(pair_key, int(pair_key.max()) + 1)
    cols["ui_imp_hist"] = ph["imp_cum"].astype(np.int64)
    cols["ui_clk_hist"] = ph["clk_cum"].astype(np.int64)
    cols["ui_has_history"] = ph["has"]
    cols["ui_last"] = ph["last"]
    for k in range(N_DEEP):
        cols[f"deep_features_{k}"] = r["deep"][:, k]

    tables = []
    for d in range(days):
        m = r["day"] == d
        n = int(m.sum())
        date = day0 + dt.timedelta(days=d)
        secs = np.sort(rng.integers(0, 86400, n))
        base = np.datetime64(date.isoformat(), "s")

        def last_date(v, m=m):
            return pa.array([None if x < 0 else day0 + dt.timedelta(days=int(x)) for x in v[m]], pa.date32())

        data = {
            "impression_id": pa.array([f"imp-{d:03d}-{j:06d}" for j in range(n)]),
            "user_id": pa.array([f"u{x}" for x in r["user"][m]]),
            "item_id": pa.array([f"i{x}" for x in r["item"][m]]),
            "scene": pa.array(np.asarray(SCENES, np.int32)[r["scene"][m]]),
            "label": pa.array(r["label"][m].astype(np.int32)),
            "log_ts": pa.array(base + secs.astype("timedelta64[s]")),
        }
        for c in DENSE_COLUMNS:
            data[c] = pa.array(cols[c][m])
        for prefix in ("u", "i", "ui"):
            data[f"{prefix}_last_hist_date"] = last_date(cols[f"{prefix}_last"])
        user_topic = TOPICS[r["user"][m] % len(TOPICS)]
        item_topic = TOPICS[r["item"][m] % len(TOPICS)]
        text = {
            "bill_entity_seq": user_topic,
            "service_entity_seq": np.char.add(user_topic, ",deals"),
            "query_entity_seq": user_topic,
            "item_entity_names": item_topic,
            "item_title": np.char.add("best ", item_topic),
        }
        for c in TEXT_COLUMNS:
            data[c] = pa.array(text[c].tolist())
        tables.append(pa.table(data))
    return tables, r["p"]


def write_sample_table(
    path: str | Path, rows_per_day: int = 3000, days: int = 6, seed: int = 0,
    start: str = "2024-03-01", drop_columns: tuple[str, ...] = (), files_per_day: int = 1, **kwargs,
) -> Path:
    """Write the table as `path/date=YYYY-MM-DD/part-K.orc` (`files_per_day` files, rows split in
    order) and return `path`."""
    path = Path(path)
    tables, _ = make_samples(rows_per_day, days, seed, start, **kwargs)
    day0 = dt.date.fromisoformat(start)
    for d, t in enumerate(tables):
        part = path / f"date={day0 + dt.timedelta(days=d)}"
        part.mkdir(parents=True, exist_ok=True)
        t = t.drop_columns(list(drop_columns))
        bounds = np.linspace(0, t.num_rows, files_per_day + 1).astype(int)
        for k in range(files_per_day):
            orc.write_table(t.slice(bounds[k], bounds[k + 1] - bounds[k]), str(part / f"part-{k}.orc"))
    return path
