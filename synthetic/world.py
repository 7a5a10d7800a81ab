"""The latent world: users and items with the traits that drive clicks.

Users have 1-3 interest topics (shown in their entity sequences), a click
propensity, a heavy-tailed activity and a first day. Items have one topic
(shown in title and entity names), one scene, a latent quality, a heavy-tailed
popularity and a first day. Everything is drawn with numpy from one Generator,
so a seed fixes the world.
"""

from dataclasses import dataclass

import numpy as np

from m2ctr.schema import SCENES
from synthetic.lang import LANGUAGES, Language
from synthetic.vocab import TOPIC_NAMES, TOPICS

N_TOPICS = len(TOPIC_NAMES)
N_SCENES = len(SCENES)  # scene k of the world is written as SCENES[k]
# Share of items per scene (in AntM2C the scene is the item type).
SCENE_MIX = np.array([0.30, 0.25, 0.20, 0.15, 0.10])
# Share of users / items that exist on the first day; the rest arrive evenly
# over the later days.
USER_FIRST_DAY_SHARE = 0.3
ITEM_FIRST_DAY_SHARE = 0.3
# Users stay active for a while and then leave; items (ads, vouchers, videos)
# are shown for a while and then retired. Geometric lifetimes with these means.
USER_MEAN_LIFETIME_DAYS = 10.0
ITEM_MEAN_LIFETIME_DAYS = 8.0

_WORDS_PER_TOPIC = len(TOPICS[TOPIC_NAMES[0]])


@dataclass
class Users:
    ids: np.ndarray  # object: "u<k>"
    first_day: np.ndarray  # int: day index the user arrives
    last_day: np.ndarray  # int: last day the user is active
    activity: np.ndarray  # float > 0: relative impression rate
    propensity: np.ndarray  # float: additive click logit
    interests: np.ndarray  # int (n, 3): topic ids, only the first n_interests are real
    n_interests: np.ndarray  # int in 1..3
    profile: np.ndarray  # float (n, 5): stable dense features deep_features_0..4
    bill_seq: np.ndarray  # object: comma-separated entities
    service_seq: np.ndarray
    query_seq: np.ndarray


@dataclass
class Items:
    ids: np.ndarray  # object: "i<k>"
    first_day: np.ndarray
    last_day: np.ndarray  # last day the item is shown
    popularity: np.ndarray  # float > 0: relative impression rate
    quality: np.ndarray  # float: additive click logit
    topic: np.ndarray  # int topic id
    scene: np.ndarray  # int 0..4
    profile: np.ndarray  # float (n, 5): stable dense features deep_features_5..9
    title: np.ndarray  # object
    entity_names: np.ndarray  # object: comma-separated entities
    title_newlines: np.ndarray  # int: newlines inside the title (for line numbers)


@dataclass
class World:
    users: Users
    items: Items
    topic_weight: np.ndarray  # share of users/items per topic
    topic_bias: np.ndarray  # additive click logit per item topic


def _first_days(rng: np.random.Generator, n: int, days: int, first_share: float) -> np.ndarray:
    first = np.zeros(n, dtype=np.int64)
    if days > 1:
        later = rng.random(n) >= first_share
        first[later] = rng.integers(1, days, size=int(later.sum()))
    return first


def _heavy_tail(rng: np.random.Generator, n: int, alpha: float, cap: float) -> np.ndarray:
    """Pareto (Zipf-like) weights with minimum 1, capped so that no single id takes
    more than about 1% of the impressions, however small the population."""
    return np.minimum(rng.pareto(alpha, size=n) + 1.0, min(cap, max(5.0, 0.02 * n)))


def _standardize(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-12)


def _join_sequences(words: np.ndarray, lengths: np.ndarray, lang: Language) -> np.ndarray:
    """Join consecutive runs of `words` (run i has lengths[i] words) into entity lists."""
    out = np.empty(len(lengths), dtype=object)
    ends = np.cumsum(lengths)
    flat = words.tolist()
    start = 0
    for i, end in enumerate(ends.tolist()):
        out[i] = lang.list_sep(i).join(flat[start:end])
        start = end
    return out


def _topic_words(rng: np.random.Generator, topics: np.ndarray, lang: Language) -> np.ndarray:
    """One random word of each given topic."""
    return lang.words[topics * _WORDS_PER_TOPIC + rng.integers(0, _WORDS_PER_TOPIC, size=len(topics))]


def _user_sequence(rng, interests, n_interests, min_len, max_len, p_empty, p_noise, lang):
    """Entity sequences: mostly words of the user's interests, some noise words."""
    n = len(n_interests)
    lengths = rng.integers(min_len, max_len + 1, size=n)
    lengths[rng.random(n) < p_empty] = 0
    owner = np.repeat(np.arange(n), lengths)
    pick = rng.integers(0, 3, size=len(owner)) % n_interests[owner]
    topics = interests[owner, pick]
    noise = rng.random(len(owner)) < p_noise
    topics[noise] = rng.integers(0, N_TOPICS, size=int(noise.sum()))
    return _join_sequences(_topic_words(rng, topics, lang), lengths, lang)


def make_users(rng: np.random.Generator, n: int, days: int, topic_weight: np.ndarray,
               lang: Language) -> Users:
    first_day = _first_days(rng, n, days, USER_FIRST_DAY_SHARE)
    last_day = first_day + rng.geometric(1.0 / USER_MEAN_LIFETIME_DAYS, size=n) - 1
    activity = _heavy_tail(rng, n, alpha=1.5, cap=300.0)
    propensity = rng.normal(0.0, 0.5, size=n)
    # Gumbel top-k: 3 distinct topics per user, popular topics more often.
    keys = np.log(topic_weight)[None, :] + rng.gumbel(size=(n, N_TOPICS))
    interests = np.argsort(-keys, axis=1)[:, :3]
    n_interests = rng.choice([1, 2, 3], size=n, p=[0.4, 0.4, 0.2])
    profile = rng.normal(size=(n, 5))
    # A profile feature that partly reveals the propensity (a dense signal for new users).
    profile[:, 0] = 0.6 * _standardize(propensity) + 0.8 * profile[:, 0]
    profile[:, 1] = 0.5 * _standardize(np.log(activity)) + 0.85 * profile[:, 1]
    return Users(
        ids=np.array([f"u{k}" for k in range(n)], dtype=object),
        first_day=first_day,
        last_day=last_day,
        activity=activity,
        propensity=propensity,
        interests=interests,
        n_interests=n_interests,
        profile=profile,
        bill_seq=_user_sequence(rng, interests, n_interests, 3, 10, 0.03, 0.15, lang),
        service_seq=_user_sequence(rng, interests, n_interests, 2, 6, 0.05, 0.2, lang),
        query_seq=_user_sequence(rng, interests, n_interests, 1, 5, 0.2, 0.25, lang),
    )


def _titles(rng, topic, quality, lang: Language) -> tuple[np.ndarray, np.ndarray]:
    """Titles from topic and generic words; a few carry quotes, commas or a newline."""
    n = len(topic)
    n_topic_words = rng.integers(2, 5, size=n)
    owner = np.repeat(np.arange(n), n_topic_words)
    words = _topic_words(rng, topic[owner], lang).tolist()
    generic = lang.generic[rng.integers(0, len(lang.generic), size=(n, 2))].tolist()
    n_generic = rng.integers(0, 3, size=n).tolist()
    good = (rng.random(n) < 1 / (1 + np.exp(-(3.0 * quality - 3.0)))).tolist()
    bad = (rng.random(n) < 1 / (1 + np.exp(3.0 * quality + 3.0))).tolist()
    good_word = rng.integers(0, len(lang.good), size=n).tolist()
    bad_word = rng.integers(0, len(lang.bad), size=n).tolist()
    special = rng.random(n).tolist()
    titles = np.empty(n, dtype=object)
    newlines = np.zeros(n, dtype=np.int64)
    start = 0
    for i, k in enumerate(n_topic_words.tolist()):
        t = words[start:start + k] + generic[i][:n_generic[i]]
        start += k
        if good[i]:
            t.insert(0, lang.good[good_word[i]])
        if bad[i]:
            t.insert(0, lang.bad[bad_word[i]])
        s = special[i]
        if s < 0.02:  # empty title: still a clean record
            titles[i] = ""
            continue
        if s < 0.035:
            t[0] = f'"{t[0]}"'  # the field then starts with a quote
        elif s < 0.05:
            t[-1] = f'"{t[-1]}"'
        elif s < 0.08:
            t[0] = t[0] + lang.title_comma
        elif s < 0.10:
            t[-1] = t[-1] + "\n" + lang.generic[i % len(lang.generic)]
            newlines[i] = 1
        elif s < 0.11:
            t[0] = f'{t[0]}{lang.word_sep}15"'  # an inch mark: a lone quote inside the text
        titles[i] = lang.join_title(t)
    return titles, newlines


def make_items(rng: np.random.Generator, n: int, days: int, topic_weight: np.ndarray,
               lang: Language) -> Items:
    first_day = _first_days(rng, n, days, ITEM_FIRST_DAY_SHARE)
    last_day = first_day + rng.geometric(1.0 / ITEM_MEAN_LIFETIME_DAYS, size=n) - 1
    popularity = _heavy_tail(rng, n, alpha=1.2, cap=1000.0)
    quality = rng.normal(0.0, 0.5, size=n)
    topic = rng.choice(N_TOPICS, size=n, p=topic_weight)
    # Each topic leans towards some scenes, so scene and topic are related but not equal.
    scene_by_topic = rng.dirichlet(8.0 * SCENE_MIX, size=N_TOPICS)
    u = rng.random(n)[:, None]
    scene = (u > np.cumsum(scene_by_topic[topic], axis=1)).sum(axis=1).clip(0, N_SCENES - 1)
    profile = rng.normal(size=(n, 5))
    profile[:, 0] = 0.6 * _standardize(quality) + 0.8 * profile[:, 0]
    title, title_newlines = _titles(rng, topic, quality, lang)
    n_names = rng.integers(2, 6, size=n)
    n_names[rng.random(n) < 0.03] = 0
    owner = np.repeat(np.arange(n), n_names)
    names = _topic_words(rng, topic[owner], lang)
    generic = rng.random(len(owner)) < 0.1
    names[generic] = lang.generic[rng.integers(0, len(lang.generic), size=int(generic.sum()))]
    return Items(
        ids=np.array([f"i{k}" for k in range(n)], dtype=object),
        first_day=first_day,
        last_day=last_day,
        popularity=popularity,
        quality=quality,
        topic=topic,
        scene=scene.astype(np.int64),
        profile=profile,
        title=title,
        entity_names=_join_sequences(names, n_names, lang),
        title_newlines=title_newlines,
    )


def make_world(rng: np.random.Generator, n_users: int, n_items: int, days: int,
               lang: Language = LANGUAGES["en"]) -> World:
    topic_weight = rng.dirichlet(np.full(N_TOPICS, 4.0))
    topic_bias = rng.normal(0.0, 0.5, size=N_TOPICS)
    users = make_users(rng, n_users, days, topic_weight, lang)
    items = make_items(rng, n_items, days, topic_weight, lang)
    return World(users=users, items=items, topic_weight=topic_weight, topic_bias=topic_bias)
