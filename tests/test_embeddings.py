"""embeddings/: text building, whitening, the real MiniLM encoder, cache, featurizer."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from embeddings import TextFeaturizer
from embeddings.encoder import HFEncoder, default_model_path
from embeddings.text import item_texts, normalise, user_texts
from embeddings.whitening import Whitening
from m2ctr.schema import cold_bucket

TOPICS = ["coffee beans", "running shoes", "phone case", "cat food", "garden tools",
          "travel insurance", "movie tickets", "yoga mat", "car wash", "piano lessons"]


def samples(n_rows: int = 40, seed: int = 0, val_text: str = "") -> pa.Table:
    """A training_samples-shaped slice: 30 train rows on 2026-01-01, the rest validation."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_rows):
        train = r < 30
        u, i = int(rng.integers(0, 8 if train else 12)), int(rng.integers(0, 8 if train else 12))
        topic = TOPICS[i % len(TOPICS)]
        rows.append({
            "impression_id": f"imp{r}", "user_id": f"u{u}", "item_id": f"i{i}",
            "date": "2026-01-01" if train else "2026-01-02",
            "query_entity_seq": "" if u == 3 else f"{TOPICS[u % 10]},{TOPICS[(u + r) % 10]}",
            "service_entity_seq": f"service {u}" if u % 2 else None,
            "bill_entity_seq": "",
            "item_title": ("" if i == 5 else f"Best {topic} deal") + (val_text if not train else ""),
            "item_entity_names": "" if i == 5 else f"{topic}, sale",
        })
    return pa.Table.from_pylist(rows)


def split(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    dates = np.array(table.column("date").to_pylist())
    return table.filter(pa.array(dates == "2026-01-01")), table.filter(pa.array(dates == "2026-01-02"))


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return {"whiten_dim": 8, "cache_dir": str(tmp_path_factory.mktemp("vectors")), "device": "cpu"}


def cold_of(counts: dict[str, dict[str, int]]):
    """A `cold(side, batch)` callable from training-row counts per side."""
    return lambda side, batch: cold_bucket([counts[side].get(v, 0) for v in batch.column(f"{side}_id").to_pylist()])


def row_counts(tables) -> dict[str, dict[str, int]]:
    out = {"user": Counter(), "item": Counter()}
    for t in tables:
        for side, counter in out.items():
            counter.update(t.column(f"{side}_id").to_pylist())
    return out


def fit(cfg, train: pa.Table, counts=None, chunk: int = 7) -> TextFeaturizer:
    counts = counts or row_counts([train])
    feat = TextFeaturizer(cfg).fit(train.to_batches(max_chunksize=chunk), cold_of(counts))
    feat.counts = counts
    return feat


def blocks(feat: TextFeaturizer, table: pa.Table) -> dict[str, np.ndarray]:
    cold = {side: cold_of(feat.counts)(side, table) for side in ("user", "item")}
    out = feat.blocks(table, cold)
    out.update({f"cold_{side}": v for side, v in cold.items()})
    return out


@pytest.fixture(scope="module")
def fitted(cfg):
    train, _ = split(samples())
    return fit(cfg, train)


# -- text building ----------------------------------------------------------------------------

def test_normalise_folds_width_case_space_and_comma_lists():
    assert normalise("ＣＯＦＦＥＥ　Beans，Tea ,, \n Milk ") == "coffee beans, tea, milk"
    assert normalise(None) == normalise("") == normalise(" , ,") == ""


def test_texts_join_fields_in_order_and_keep_empty_explicit():
    table = pa.table({"query_entity_seq": ["Q1,Q2", None], "service_entity_seq": ["", None],
                      "bill_entity_seq": ["b", ""], "item_title": ["Title", ""],
                      "item_entity_names": ["e1, e2", None]})
    assert user_texts(table) == ["q1, q2. b", ""]
    assert item_texts(table) == ["title. e1, e2", ""]


# -- whitening --------------------------------------------------------------------------------

def test_whitening_gives_identity_covariance_on_its_training_data():
    rng = np.random.default_rng(1)
    d = 6
    a = rng.normal(size=(d, d))
    cov = a @ a.T + 0.1 * np.eye(d)  # a known, strongly correlated covariance
    x = rng.multivariate_normal(mean=np.arange(d, dtype=float), cov=cov, size=4000)
    white = Whitening.fit(x, k=d)
    z = white.transform(x)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(d), atol=1e-4)
    # keeping k < d keeps the k strongest directions, still white
    z3 = Whitening.fit(x, k=3).transform(x)
    assert z3.shape == (4000, 3)
    np.testing.assert_allclose(np.cov(z3, rowvar=False), np.eye(3), atol=1e-4)


def test_whitening_drops_directions_without_variance():
    x = np.random.default_rng(2).normal(size=(5, 20))  # 5 points span 4 dimensions
    white = Whitening.fit(x, k=16)
    assert white.dim == 4
    assert np.isfinite(white.transform(np.random.default_rng(3).normal(size=(3, 20)))).all()


# -- encoder (the real bundled MiniLM) -----------------------------------------------------------

@pytest.mark.parametrize("pooling", ["last4-mean", "first-last-avg"])
def test_pooling_is_mask_aware(pooling):
    enc = HFEncoder(pooling=pooling, device="cpu")
    texts = ["cat food", "a much longer text about running shoes and garden tools for sale"]
    together = enc.encode(texts)
    alone = np.stack([enc.encode([t])[0] for t in texts])
    assert together.shape == (2, 384)
    # padding the short text in a batch must not change its vector
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_truncates_by_tokens():
    enc = HFEncoder(max_tokens=8, device="cpu")
    long = "coffee beans " * 50
    v = enc.encode([long, "coffee beans " * 40])
    np.testing.assert_allclose(v[0], v[1], atol=1e-5)


def test_loads_local_model_offline(tmp_path):
    """A fresh process with the Hub switched off, an empty HF cache and no reachable network."""
    code = textwrap.dedent("""
        from embeddings.encoder import HFEncoder, SentenceEncoder, default_model_path
        enc = HFEncoder(default_model_path(), device="cpu")
        assert enc.encode(["offline coffee"]).shape == (1, 384)
        assert SentenceEncoder(device="cpu").encode(["offline coffee"]).shape == (1, 384)
        print("ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").rglob("*.safetensors"))
    assert default_model_path().endswith("model")


# -- featurizer ---------------------------------------------------------------------------------

def test_blocks_shapes_flags_and_buckets(fitted):
    _, val = split(samples())
    out = blocks(fitted, val)
    n = val.num_rows
    assert set(out) == {"text_user", "text_item", "fb_user", "fb_item", "cold_user", "cold_item"}
    for name, width in fitted.widths.items():
        assert out[name].shape == (n, width) and out[name].dtype == np.float32
    assert fitted.widths["text_user"] == 8 + 1 and fitted.widths["fb_item"] == 384 + 1

    users, items = val.column("user_id").to_pylist(), val.column("item_id").to_pylist()
    # ids never seen in training are bucket 0 (zero); u8.. and i8.. exist only in validation
    assert all(b == 0 for u, b in zip(users, out["cold_user"]) if int(u[1:]) >= 8)
    assert all(b == 0 for i, b in zip(items, out["cold_item"]) if int(i[1:]) >= 8)

    # item i5 has no text: flag set, vector zero, in both blocks (when cold)
    empty = np.array([i == "i5" for i in items])
    if empty.any():
        assert (out["text_item"][empty, -1] == 1).all() and (out["text_item"][empty, :-1] == 0).all()
    assert (out["text_item"][~empty, -1] == 0).all()
    assert (np.abs(out["text_item"][~empty, :-1]).sum(axis=1) > 0).all()


def test_tables_hold_each_unique_text_once_and_rows_hold_indices(fitted):
    table = samples()
    idx = fitted.transform(table)
    assert set(idx) == {"text_index_user", "text_index_item"} and idx["text_index_item"].dtype == np.int64
    texts = item_texts(table)
    # one table row per unique raw text, however many rows show it
    assert len(fitted.tables["item"]) == len(set(zip(*(table.column(c).to_pylist()
                                                        for c in ("item_title", "item_entity_names")))))
    for r in range(table.num_rows):
        same = [q for q in range(table.num_rows) if texts[q] == texts[r]]
        assert len({int(idx["text_index_item"][q]) for q in same}) == 1


def test_fallback_is_sentence_vector_when_cold_and_mean_when_warm(cfg):
    train, _ = split(samples())
    counts = {"user": {"u0": 9, "u1": 2}, "item": {}}  # u0 warm, u1 few, everybody else zero
    feat = fit(cfg, train, counts)
    out = blocks(feat, train)
    users = np.array(train.column("user_id").to_pylist())
    texts = user_texts(train)
    warm, few = users == "u0", (users == "u1") & np.array([bool(t) for t in texts])
    assert warm.any() and few.any()
    np.testing.assert_allclose(out["fb_user"][warm, :-1], feat.fallback.mean["user"][None].repeat(warm.sum(), 0))
    expected = feat.fallback.encoder.encoder.encode([t for t, f in zip(texts, few) if f])
    np.testing.assert_allclose(out["fb_user"][few, :-1], expected, atol=1e-5)
    assert not np.allclose(feat.fallback.mean["user"], 0)
    assert (out["cold_user"][warm] == 2).all() and (out["cold_user"][few] == 1).all()


def test_vectors_follow_rows_under_shuffling(fitted):
    table = samples()
    perm = np.random.default_rng(5).permutation(table.num_rows)
    shuffled = table.take(pa.array(perm))
    a, b = blocks(fitted, table), blocks(fitted, shuffled)
    for name in a:
        np.testing.assert_allclose(a[name][perm], b[name], atol=1e-5)
    # and each row carries the whitened vector of its own text
    texts = item_texts(shuffled)
    row = next(r for r, t in enumerate(texts) if t)
    own = fitted.vectors.whitening.transform(fitted.vectors.encoder.encoder.encode([texts[row]]))[0]
    np.testing.assert_allclose(b["text_item"][row, :-1], own, atol=1e-3)


def test_whitening_is_fitted_on_training_texts_only(cfg):
    fits = []
    for val_text in ("", " with a completely different validation title"):
        train, val = split(samples(val_text=val_text))
        feat = fit(cfg, train, chunk=10)
        mu, W = feat.vectors.whitening.mu.copy(), feat.vectors.whitening.W.copy()
        blocks(feat, val)  # seeing validation text must not move the fit
        np.testing.assert_array_equal(mu, feat.vectors.whitening.mu)
        np.testing.assert_array_equal(W, feat.vectors.whitening.W)
        fits.append((mu, W))
        # mu is the mean over the unique non-empty training texts of both sides
        unique = sorted({t for t in (*user_texts(train), *item_texts(train)) if t})
        np.testing.assert_allclose(mu, feat.vectors.encoder.vectors(unique).mean(axis=0), atol=1e-5)
    np.testing.assert_array_equal(fits[0][0], fits[1][0])
    np.testing.assert_array_equal(fits[0][1], fits[1][1])
    # fitting on validation rows too would have moved mu: the check above can fail
    train, val = split(samples(val_text=" with a completely different validation title"))
    leaky = fit(cfg, pa.concat_tables([train, val]))
    assert not np.allclose(leaky.vectors.whitening.mu, fits[0][0])


def test_second_run_encodes_nothing(tmp_path):
    cfg = {"whiten_dim": 8, "cache_dir": str(tmp_path / "cache"), "device": "cpu"}
    train, val = split(samples(seed=3))
    first = fit(cfg, train)
    out1 = blocks(first, val)
    assert first.n_encoded > 0
    assert list((tmp_path / "cache").rglob("part-*.parquet"))

    second = fit(cfg, train)
    out2 = blocks(second, val)
    assert second.n_encoded == 0
    assert second.vectors.encoder.n_cache_hits > 0
    for name in out1:
        np.testing.assert_allclose(out1[name], out2[name], atol=1e-6)


def test_each_unique_text_is_encoded_once(tmp_path):
    cfg = {"whiten_dim": 8, "cache_dir": "", "device": "cpu", "fallback": False}
    train, _ = split(samples(seed=4))
    feat = fit(cfg, train)
    n_unique = len({t for t in user_texts(train) if t}) + len({t for t in item_texts(train) if t})
    assert feat.n_encoded == n_unique
    blocks(feat, train)
    blocks(feat, train)
    assert feat.n_encoded == n_unique
    assert set(blocks(feat, train)) == {"text_user", "text_item", "cold_user", "cold_item"}


def test_save_and_load_give_the_same_blocks(fitted, tmp_path):
    fitted.save(tmp_path)
    assert (tmp_path / "whiten_W.npy").is_file()
    assert (tmp_path / "whiten_mu.npy").is_file()
    loaded = TextFeaturizer.load(tmp_path)
    loaded.counts = fitted.counts
    _, val = split(samples())
    a, b = blocks(fitted, val), blocks(loaded, val)
    assert loaded.widths == fitted.widths
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-6)


# -- text components ----------------------------------------------------------------------------

def test_text_components_are_fitted_on_training_texts_in_one_space_and_survive_save(tmp_path):
    cfg = {"vectors": False, "fallback": False, "topics": True, "topic_dim": 6, "cache_dir": ""}
    train, val = split(samples(val_text=" with a completely different validation title"))
    feat = fit(cfg, train)
    assert feat.widths == {"topic_user": 7, "topic_item": 7}
    vocabulary = set(feat.topics.components.tfidf.vocabulary_)
    assert "coffee" in vocabulary and "completely" not in vocabulary  # validation words unseen
    both = pa.concat_tables([train, val])
    out = blocks(feat, both)
    assert set(out) == {"topic_user", "topic_item", "cold_user", "cold_item"}

    # each row carries the components of its own text; user and item sides share the space
    texts = {"user": user_texts(both), "item": item_texts(both)}
    for side in ("user", "item"):
        present = np.array([bool(t) for t in texts[side]])
        np.testing.assert_allclose(out[f"topic_{side}"][present, :-1],
                                   feat.topics.components.transform([t for t in texts[side] if t]), atol=1e-6)
        assert (out[f"topic_{side}"][~present] == np.r_[np.zeros(6), 1.0]).all()
    assert (~np.array([bool(t) for t in texts["item"]])).any()  # the "no text" case is exercised

    feat.save(tmp_path)
    loaded = TextFeaturizer.load(tmp_path)
    loaded.counts = feat.counts
    again = blocks(loaded, both)
    for name in out:
        np.testing.assert_array_equal(out[name], again[name])
