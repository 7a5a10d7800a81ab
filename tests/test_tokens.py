"""Content ids: vocabulary from the training days, hash buckets, one table for both sides, rows
keep their own tokens, and on a planted table tokens carry the signal new items have."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from embeddings.text import TEXT_FIELDS
from embeddings.tokens import TokenVocab, field_tokens
from synthetic.sample_table import write_sample_table
from tests.test_embeddings import blocks, fit, samples, split
from trainer.cli import main
from trainer.models.layers import TokenPooling

CFG = {"vectors": False, "fallback": False, "tokens": True, "cache_dir": "", "token_min_count": 1,
       "token_buckets": 16, "tokens_per_field": 4}


def test_vocabulary_comes_from_the_training_days_only():
    fitted = []
    for val_text in ("", " zebra xylophone"):
        train, val = split(samples(val_text=val_text))
        feat = fit(CFG, train)
        blocks(feat, val)  # seeing validation text must not move the vocabulary
        fitted.append(list(feat.tokens.vocab.tokens))
    assert fitted[0] == fitted[1]
    assert "coffee beans" in fitted[0] and "zebra" not in fitted[0]
    # fitting on the validation rows as well would have added its words: the check can fail
    train, val = split(samples(val_text=" zebra xylophone"))
    assert "zebra" in fit(CFG, pa.concat_tables([train, val])).tokens.vocab.tokens


def test_unseen_and_rare_tokens_land_in_the_shared_buckets():
    vocab = TokenVocab.fit([(["item_entity_names"], ["sushi, ramen"], 5), (["item_entity_names"], ["tofu"], 1)],
                           min_count=2, max_vocab=10, buckets=8, per_field=4)
    assert vocab.tokens == ["ramen", "sushi"] and vocab.size == 1 + 2 + 8
    for token in ("tofu", "never seen", "zebra"):
        assert 3 <= vocab.token_id(token) < vocab.size  # after padding and the vocabulary
    assert vocab.token_id("zebra") == vocab.token_id("zebra")
    ids = vocab.encode(["item_entity_names", "item_title"], [["sushi, tofu", "Best Sushi!"], [None, ""]])
    assert ids.shape == (2, 2, 4) and ids.dtype == np.int32
    assert ids[0, 0, 0] == vocab.token_id("sushi") and ids[0, 1, 1] == vocab.token_id("sushi")
    assert (ids[1] == 0).all()  # no text: only padding
    assert field_tokens("item_title", "Best  SUSHI, deal") == ["best", "sushi", "deal"]


def test_user_and_item_sides_share_one_table():
    train, _ = split(samples())
    feat = fit(CFG, train)
    out = blocks(feat, train)
    # "coffee beans" is an entity of user queries and of item names: one id on both sides
    coffee = feat.tokens.vocab.token_id("coffee beans")
    assert (out["tok_user"] == coffee).any() and (out["tok_item"] == coffee).any()
    pooling = TokenPooling(feat.token_spec, dim=4)
    tables = [m for m in pooling.modules() if isinstance(m, torch.nn.EmbeddingBag)]
    assert len(tables) == 1 and tables[0].num_embeddings == feat.tokens.vocab.size


def test_tokens_follow_their_rows_when_batches_are_shuffled():
    table = samples()
    feat = fit(CFG, split(table)[0])
    perm = np.random.default_rng(3).permutation(table.num_rows)
    a, b = blocks(feat, table), blocks(feat, table.take(pa.array(perm)))
    np.testing.assert_array_equal(a["tok_item"][perm], b["tok_item"])
    np.testing.assert_array_equal(a["tok_user"][perm], b["tok_user"])
    titles = table.take(pa.array(perm)).column("item_title").to_pylist()
    row = next(r for r, t in enumerate(titles) if t)
    own = feat.tokens.vocab.encode(["item_title"], [[titles[row]]])[0, 0]
    assert (b["tok_item"][row, list(TEXT_FIELDS["item"]).index("item_title")] == own).all()


def test_chinese_titles_become_words_that_meet_the_entity_lists():
    # Written as the zh sample writes them: no spaces, entities inside other words.
    title = "官方精选机票酒店优惠，护照签证办理指南"
    words = field_tokens("item_title", title)
    assert len(words) >= 6 and {"机票", "酒店", "护照", "签证", "指南"} <= set(words)
    entities = field_tokens("item_entity_names", "机票,酒店，护照")
    assert set(entities) <= set(words)
    vocab = TokenVocab.fit([(["item_title", "item_entity_names"], [title, "机票,酒店，护照"], 3)],
                           min_count=2, max_vocab=100, buckets=8, per_field=8)
    ids = vocab.encode(["item_title", "item_entity_names"], [[title, "机票，酒店，护照"]])[0]
    assert set(ids[1][ids[1] > 0]) <= set(ids[0][ids[0] > 0])  # one id where the two meet
    # English keeps its word split; a mixed run is split where the script changes.
    assert field_tokens("item_title", "Best Sushi-Bar, 15\" deal") == ["best", "sushi", "bar", "15", "deal"]
    assert {"iphone", "手机"} <= set(field_tokens("item_title", "iPhone手机壳"))


@pytest.mark.parametrize("column", ["item_entity_names", "query_entity_seq"])
def test_full_width_and_ascii_separators_give_the_same_entities(column):
    expected = ["咖啡豆", "拿铁", "coffee beans"]
    for written in ("咖啡豆,拿铁,Coffee Beans", "咖啡豆，拿铁，Coffee Beans", "咖啡豆、拿铁, coffee beans",
                    " 咖啡豆 ，拿铁,,ＣＯＦＦＥＥ　beans"):
        assert field_tokens(column, written) == expected, written


def test_text_components_use_the_token_words():
    from embeddings.topics import TextComponents

    texts = ["护士处方药店奖励. 药店, 护士", "年份梅洛霞多丽新品. 梅洛, 年份", "咖啡豆手冲摩卡. 摩卡",
             "Best sushi ramen. sushi, ramen"]
    comp = TextComponents(n_components=2).fit(texts)
    assert {"药店", "梅洛", "霞多丽", "摩卡", "sushi"} <= set(comp.tfidf.vocabulary_)
    assert not {"护士处方药店奖励", "年份梅洛霞多丽新品"} & set(comp.tfidf.vocabulary_)  # no stretches


@pytest.mark.slow
def test_tokens_beat_no_tokens_on_zero_history_items(tmp_path):
    """A table whose clicks depend on the item's topic and on the user's topic matching it, which
    only the text shows: with tokens, new items are scored better than without them."""
    table = write_sample_table(tmp_path / "training_samples", rows_per_day=3000, days=6, seed=2,
                               topic_effect=2.5, topic_affinity=2.0)
    aucs = {}
    for name, extra in (("plain", []), ("tokens", ["--tokens"])):
        out = tmp_path / name
        assert main(["fit", "dnn", "--table", str(table), "--out", str(out), "--epochs", "3", "--threads", "1",
                     "--batch-size", "512", "--seed", "0", "--quiet", *extra]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        aucs[name] = metrics["test"]["cold_start"]["item"]["zero"]["auc"]
    assert aucs["tokens"] > aucs["plain"] + 0.02, aucs


def test_text_components_have_unit_spread_and_load_back_as_fitted(tmp_path):
    """A network reads the components beside standardised columns: each has spread 1 over the texts
    it was fitted on, and a saved set transforms exactly as the fitted one (an older set saved
    without its scale reads unscaled, as its run trained)."""
    import numpy as np

    from embeddings.topics import TextComponents

    texts = [f"{a} {b}. {a}, {b}" for a in ("sushi", "ramen", "latte", "mocha", "gin", "wine")
             for b in ("deal", "new", "best", "city", "gift")]
    comp = TextComponents(n_components=4).fit(texts)
    z = comp.transform(texts)
    spread = z.std(axis=0)
    varying = spread > 1e-3  # these texts' shared structure makes one component constant
    assert varying.sum() >= 3
    np.testing.assert_allclose(spread[varying], 1.0, rtol=1e-4)
    flat = TextComponents(n_components=2).fit([f"{t} offer" for t in texts])  # one word in every text
    assert np.abs(flat.transform(texts)).max() < 10  # a constant component is not blown up
    comp.save(tmp_path / "topics")
    np.testing.assert_array_equal(TextComponents.load(tmp_path / "topics").transform(texts), z)
    saved = dict(np.load(tmp_path / "topics.npz"))
    np.savez(tmp_path / "topics.npz", idf=saved["idf"], components=saved["components"])
    np.testing.assert_allclose(TextComponents.load(tmp_path / "topics").transform(texts), z * comp.scale, rtol=1e-5)
