"""Impressions and clicks: who sees what, when, and the true click probability.

Per day, users are drawn by activity (new users get a boost on their first
day); half of the impressions are targeted (an item of one of the user's
interest topics), half come from the global popularity ranking. The click
logit is additive:

    logit = scene offset (so that the scene's mean probability is its base rate)
          + scene-specific effects of deep_features_10..13
          + AFFINITY if the item's topic is one of the user's interests
          + topic bias of the item's topic
          + user propensity - small activity effect
          + item quality + small popularity effect

and the label is a Bernoulli draw of sigmoid(logit).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from m2ctr.schema import N_DEEP_FEATURES
from synthetic.world import N_TOPICS, World

N_DEEP = N_DEEP_FEATURES
SCENE_BASE_CTR = np.array([0.02, 0.04, 0.06, 0.09, 0.14])
# Rows: scene 0..4; columns: weight of deep_features_10..13 in that scene's logit.
SCENE_EFFECTS = np.array([
    [0.5, 0.0, 0.3, 0.0],
    [-0.4, 0.4, 0.0, 0.0],
    [0.0, -0.5, 0.0, 0.3],
    [0.3, 0.0, -0.4, 0.0],
    [0.0, 0.3, 0.0, -0.5],
])
EFFECT_FEATURES = slice(10, 14)
AFFINITY = 1.6
POPULARITY_EFFECT = 0.15
ACTIVITY_EFFECT = -0.1
TARGETED_SHARE = 0.5
NEW_USER_BOOST = 3.0
NEW_ITEM_BOOST = 2.0
# Relative impression volume per hour of day.
HOUR_WEIGHT = np.array([1.0, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.0, 2.0, 2.0, 2.2,
                        2.5, 2.2, 2.0, 2.0, 2.1, 2.3, 2.6, 3.0, 3.2, 3.0, 2.4, 1.6])
# Poisson means of the count-like features deep_features_20..26.
COUNT_MEANS = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0])
EMPTY_FEATURE_RATE = 0.01
# Decimal features are clipped to +-FEATURE_LIMIT and rounded to 4 places; counts to MAX_COUNT.
FEATURE_LIMIT = 8.0
MAX_COUNT = 99
# Rows per random draw of the per-row features: bounds the draws' temporaries at any size.
DRAW_ROWS = 1_000_000


@dataclass
class Impressions:
    user: np.ndarray  # user index
    item: np.ndarray  # item index
    day: np.ndarray  # day index
    second: np.ndarray  # second of the day as written (short form: whole minutes)
    short_form: np.ndarray  # bool: written as yyyy/M/d H:mm
    deep: np.ndarray  # float (n, 27); NaN where the field is written empty
    affinity: np.ndarray  # bool
    logit: np.ndarray
    p_click: np.ndarray
    label: np.ndarray  # int 0/1


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def _standardize(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-12)


def _choose(rng: np.random.Generator, candidates: np.ndarray, weight: np.ndarray, size: int):
    return rng.choice(candidates, size=size, p=weight / weight.sum())


def _sample_pairs(rng: np.random.Generator, world: World, rows: int, days: int):
    users, items = world.users, world.items
    volume = (1.0 + 0.03 * np.arange(days)) * rng.uniform(0.9, 1.1, size=days)
    per_day = rng.multinomial(rows, volume / volume.sum())
    topic_items = [np.flatnonzero(items.topic == t) for t in range(N_TOPICS)]
    all_items = np.arange(len(items.ids))
    user_parts, item_parts, day_parts = [], [], []
    for d, n_d in enumerate(per_day.tolist()):
        u_ok = np.flatnonzero((users.first_day <= d) & (users.last_day >= d))
        if len(u_ok) == 0:  # tiny populations: nobody active today, take anyone arrived
            u_ok = np.flatnonzero(users.first_day <= d)
        u_w = users.activity[u_ok] * np.where(users.first_day[u_ok] == d, NEW_USER_BOOST, 1.0)
        u = _choose(rng, u_ok, u_w, n_d)
        i_w = items.popularity * ((items.first_day <= d) & (items.last_day >= d))
        if i_w.sum() == 0:  # tiny populations: no live item today, show retired ones
            i_w = items.popularity * (items.first_day <= d)
        i_w = i_w * np.where(items.first_day == d, NEW_ITEM_BOOST, 1.0)
        it = np.empty(n_d, dtype=np.int64)
        targeted = rng.random(n_d) < TARGETED_SHARE
        pick = rng.integers(0, 3, size=n_d) % users.n_interests[u]
        topic = np.where(targeted, users.interests[u, pick], -1)
        # Rows whose interest topic has no item yet fall back to the global ranking.
        for t in range(N_TOPICS):
            rows_t = np.flatnonzero(topic == t)
            if len(rows_t) == 0:
                continue
            w_t = i_w[topic_items[t]]
            if w_t.sum() > 0:
                it[rows_t] = _choose(rng, topic_items[t], w_t, len(rows_t))
            else:
                topic[rows_t] = -1
        glob = topic == -1
        it[glob] = _choose(rng, all_items, i_w, int(glob.sum()))
        user_parts.append(u)
        item_parts.append(it)
        day_parts.append(np.full(n_d, d, dtype=np.int64))
    return np.concatenate(user_parts), np.concatenate(item_parts), np.concatenate(day_parts)


def _sample_times(rng: np.random.Generator, n: int, short_share: float):
    hour = rng.choice(24, size=n, p=HOUR_WEIGHT / HOUR_WEIGHT.sum())
    second = hour * 3600 + rng.integers(0, 3600, size=n)
    short_form = rng.random(n) < short_share
    # The short form has no seconds: what is written (and parsed) is the whole minute.
    return np.where(short_form, second // 60 * 60, second), short_form


def _make_keys_unique(rng, user, item, day, second, short_form) -> np.ndarray:
    """Redraw times until (user, item, parsed time) is unique, so that every raw
    record is distinct and truth joins to the warehouse one to one."""
    for _ in range(100):
        key = pd.DataFrame({"u": user, "i": item, "t": day * 86400 + second})
        dup = np.flatnonzero(key.duplicated().to_numpy())
        if len(dup) == 0:
            return second
        s = rng.integers(0, 86400, size=len(dup))
        second[dup] = np.where(short_form[dup], s // 60 * 60, s)
    raise ValueError("too many records for the users, items and days to keep (user, item, "
                     "time) unique: use more --users, --items or --days")


def _row_chunks(n: int):
    """Row ranges of at most DRAW_ROWS: a draw of shape (n, k) made chunk by chunk takes the same
    numbers from the generator, in the same order, as one draw, without an (n, k) temporary."""
    return ((lo, min(lo + DRAW_ROWS, n)) for lo in range(0, n, DRAW_ROWS))


def _deep_features(rng, world: World, user, item, n_written: int) -> np.ndarray:
    n = len(user)
    x = np.empty((n, N_DEEP))
    for lo, hi in _row_chunks(n):
        x[lo:hi, 0:5] = world.users.profile[user[lo:hi]] + rng.normal(0.0, 0.1, size=(hi - lo, 5))
    for lo, hi in _row_chunks(n):
        x[lo:hi, 5:10] = world.items.profile[item[lo:hi]] + rng.normal(0.0, 0.1, size=(hi - lo, 5))
    for lo, hi in _row_chunks(n):
        x[lo:hi, 10:20] = rng.normal(size=(hi - lo, 10))
    for lo, hi in _row_chunks(n):
        x[lo:hi, 20:27] = np.minimum(rng.poisson(COUNT_MEANS, size=(hi - lo, 7)), MAX_COUNT)
    for lo, hi in _row_chunks(n):
        rows = x[lo:hi]
        rows[:, :20] = np.round(np.clip(rows[:, :20], -FEATURE_LIMIT, FEATURE_LIMIT), 4) + 0.0  # no -0.0
    for lo, hi in _row_chunks(n):
        x[lo:hi][rng.random((hi - lo, N_DEEP)) < EMPTY_FEATURE_RATE] = np.nan
    x[:, n_written:] = np.nan  # columns not written are absent
    return x


def _scene_offsets(logit: np.ndarray, scene: np.ndarray) -> np.ndarray:
    """Per-scene logit offset that makes the scene's mean click probability its base rate."""
    offsets = _logit(SCENE_BASE_CTR)
    for s in range(len(SCENE_BASE_CTR)):
        x = logit[scene == s]
        if len(x) == 0:
            continue
        for _ in range(50):  # Newton's method on mean(sigmoid(x + c)) = base rate
            p = _sigmoid(x + offsets[s])
            step = (p.mean() - SCENE_BASE_CTR[s]) / max((p * (1 - p)).mean(), 1e-12)
            offsets[s] -= step
            if abs(step) < 1e-10:
                break
    return offsets


def sample_impressions(rng: np.random.Generator, world: World, rows: int, days: int,
                       short_share: float, n_written_features: int) -> Impressions:
    users, items = world.users, world.items
    user, item, day = _sample_pairs(rng, world, rows, days)
    second, short_form = _sample_times(rng, rows, short_share)
    second = _make_keys_unique(rng, user, item, day, second, short_form)
    deep = _deep_features(rng, world, user, item, n_written_features)
    scene = items.scene[item]
    topic = items.topic[item]
    affinity = (users.interests[user] == topic[:, None]) & (
        np.arange(3)[None, :] < users.n_interests[user][:, None])
    affinity = affinity.any(axis=1)
    # The truth uses the features as the data shows them: empty or absent counts as 0.
    shown = np.nan_to_num(deep[:, EFFECT_FEATURES], nan=0.0)
    logit = (
        (SCENE_EFFECTS[scene] * shown).sum(axis=1)
        + AFFINITY * affinity
        + world.topic_bias[topic]
        + users.propensity[user]
        + ACTIVITY_EFFECT * _standardize(np.log(users.activity))[user]
        + items.quality[item]
        + POPULARITY_EFFECT * _standardize(np.log(items.popularity))[item]
    )
    logit = logit + _scene_offsets(logit, scene)[scene]
    p_click = _sigmoid(logit)
    label = (rng.random(rows) < p_click).astype(np.int64)
    return Impressions(user=user, item=item, day=day, second=second, short_form=short_form,
                       deep=deep, affinity=affinity, logit=logit, p_click=p_click, label=label)
