"""A long-running service holds its memory: the text tables it grows are bounded, LRU first."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pyarrow import orc
from sample_snapshot import write_sample_snapshot

from m2ctr.schema import ITEM_TEXT_COLUMNS, USER_TEXT_COLUMNS
from serving import load_scorer
from serving.payload import Item, User
from synthetic.sample_table import write_sample_table
from trainer.cli import main

BOUND = 5_000
CANDIDATES = 100


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    """A dnn run with content ids (no encoder: new texts are cheap, so the stream can be long)."""
    root = tmp_path_factory.mktemp("memory")
    table = write_sample_table(root / "table", rows_per_day=300, days=4, seed=5)
    run = root / "run"
    assert main(["fit", "dnn", "--tokens", "--table", str(table), "--out", str(run), "--epochs", "1",
                 "--threads", "1", "--quiet"]) == 0
    last = max(table.glob("date=*"))
    write_sample_snapshot(orc.read_table(str(last / "part-0.orc")), last.name.removeprefix("date="),
                          root / "warehouse" / "m2ctr.db", fill_unseen=True)  # finite for any scene
    return load_scorer(run, root / "warehouse", schema="m2ctr", threads=1, max_texts=BOUND)


def request(k: int):
    """One user and CANDIDATES items, every text never seen before."""
    user = User(user_id=f"u{k}", **{c: f"novel user words w{k}x{i}" for i, c in enumerate(USER_TEXT_COLUMNS)})
    items = [Item(item_id=f"i{k}-{j}", scene=0, **{c: f"fresh title t{k}y{j} z{i}" for i, c in
                                                    enumerate(ITEM_TEXT_COLUMNS)}) for j in range(CANDIDATES)]
    return user, items


def test_a_stream_of_new_texts_stays_under_the_bound_and_rss_stops_growing(scorer):
    start, deadline = scorer.content_tables(), time.monotonic() + 300
    n_requests = 100_000 // CANDIDATES   # 100,000 distinct new item texts (and 1,000 user texts)
    rss = {}
    for k in range(n_requests):
        assert time.monotonic() < deadline, f"only {k} requests in 300 s"
        scorer.score(*request(k))
        if k + 1 in (n_requests // 2, n_requests):
            rss[k + 1] = rss_mb()
    tables = scorer.content_tables()
    assert tables["max_added_texts"] == BOUND
    for side in ("user", "item"):
        assert tables[side]["run_texts"] == start[side]["run_texts"]  # the run's own texts stay
        assert 0 < tables[side]["added_texts"] <= BOUND
    assert tables["item"]["misses"] - start["item"]["misses"] == 100_000
    growth = rss[n_requests] - rss[n_requests // 2]
    assert growth < 8, f"RSS grew {growth:.1f} MB over the second 50,000 texts ({rss})"


def test_recently_used_texts_survive_a_trim_and_hits_are_counted(scorer):
    user, items = request(10**9)
    scorer.score(user, items)             # these texts enter the table ...
    for k in range(BOUND // CANDIDATES):  # ... stay in use while newer ones push the table past its bound
        scorer.score(user, items)
        scorer.score(*request(2 * 10**9 + k))
    before = scorer.content_tables()["item"]
    p = scorer.score(user, items)
    after = scorer.content_tables()["item"]
    assert after["hits"] - before["hits"] == CANDIDATES and after["misses"] == before["misses"]
    assert 0 < after["hit_rate"] < 1 and len(p) == CANDIDATES
