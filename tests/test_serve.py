"""`trainer serve`: the real service (uvicorn on 127.0.0.1, a free port) spoken to over HTTP.

Fast tests: a fusion run on a small sample table and a snapshot fixture in the warehouse's layout,
made from the table's last day (the state of every user, item and pair at the start of that day is
in that day's rows). The slow test builds the real warehouse twice (days 1..N-1 and 1..N) and
checks that day N's raw records scored by the service match `trainer predict` on the full build.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import uvicorn
from pyarrow import orc
from sample_snapshot import write_sample_snapshot

from m2ctr.schema import (
    DEEP_FEATURES,
    ITEM_TEXT_COLUMNS,
    USER_TEXT_COLUMNS,
)
from serving import load_scorer
from serving.app import create_app
from serving.server import bind
from serving.snapshot import SNAPSHOT_MODELS, Snapshot
from synthetic.sample_table import write_sample_table
from trainer.cli import main
from trainer.scoring import predict
from trainer.table import TrainerError

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"


# ---------------------------------------------------------------------------- helpers


@contextmanager
def running(app):
    """Serve `app` with uvicorn in a thread on a free port of 127.0.0.1; yields the base URL."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_accepted_connections_send_without_waiting_for_acks():
    """The listening socket the service binds makes connections with Nagle's algorithm off. With it
    on, a response's body waits for the client's delayed ACK of its headers: ~40 ms a request."""
    sock = bind("127.0.0.1", 0)
    seen = {}

    async def exchange():
        def accepted(reader, writer):
            seen["nodelay"] = writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(exchange())
    assert seen == {"nodelay": 1}


def http(url: str, body=None, headers: dict | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def rows_of(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def request_for(rows: list[dict]) -> dict:
    """A /score body for rows of one user (the raw fields of a training_samples row)."""
    first = rows[0]
    return {"user": {"user_id": first["user_id"], **{c: first[c] for c in USER_TEXT_COLUMNS}},
            "items": [{"item_id": r["item_id"], "scene": r["scene"], **{c: r[c] for c in ITEM_TEXT_COLUMNS},
                       **{c: r[c] for c in DEEP_FEATURES}} for r in rows]}


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A fusion run on a sample table, a snapshot as of its last day, the run's predictions."""
    root = tmp_path_factory.mktemp("serve")
    table = write_sample_table(root / "table", rows_per_day=300, days=4, seed=5)
    run = root / "run"
    assert main(["fit", "fusion", "--table", str(table), "--out", str(run), "--epochs", "1",
                 "--device", "cpu", "--threads", "1", "--cache-dir", str(root / "cache"),
                 "--whiten-dim", "16", "--quiet"]) == 0
    last = max(table.glob("date=*"))
    as_of = last.name.removeprefix("date=")
    day = orc.read_table(str(last / "part-0.orc"))
    warehouse = root / "warehouse"
    write_sample_snapshot(day, as_of, warehouse / "m2ctr.db")
    preds = predict(run, str(last.parent), root / "pred.parquet")
    probability = dict(zip(*pq.read_table(preds).to_pydict().values()))
    scorer = load_scorer(run, warehouse, schema="m2ctr", threads=1)
    return {"root": root, "run": run, "warehouse": warehouse, "table": table, "day": day, "as_of": as_of,
            "probability": probability, "scorer": scorer}


@pytest.fixture(scope="module")
def url(served):
    with running(create_app(served["scorer"], max_candidates=50)) as base:
        yield base


@pytest.fixture(scope="module")
def onnx_url(served):
    """The same run served through its ONNX export (exported at start-up) and onnxruntime."""
    scorer = load_scorer(served["run"], served["warehouse"], schema="m2ctr", threads=1, runtime="onnx")
    with running(create_app(scorer, max_candidates=50)) as base:
        yield base


@pytest.fixture(scope="module")
def secured_url(served):
    with running(create_app(served["scorer"], token=TOKEN, max_body_bytes=4000)) as base:
        yield base


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_scores_equal_predict_on_the_same_rows(served, runtime, request):
    url = request.getfixturevalue("url" if runtime == "torch" else "onnx_url")
    status, meta = http(f"{url}/metadata")
    assert status == 200 and meta["runtime"] == runtime
    by_user = defaultdict(list)
    for r in rows_of(served["day"]):
        by_user[r["user_id"]].append(r)
    assert len(by_user) > 20
    requests = [rows[k : k + 50] for rows in by_user.values() for k in range(0, len(rows), 50)]  # the limit
    got, want = [], []
    for rows in requests:
        status, body = http(f"{url}/score", request_for(rows))
        assert status == 200, body
        assert body["model"] == "fusion" and body["features_as_of"] == served["as_of"]
        got += body["scores"]
        want += [served["probability"][r["impression_id"]] for r in rows]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 if runtime == "torch" else 1e-5)
    assert np.std(want) > 0.01  # the comparison is between varied scores, not constants


def test_score_order_follows_the_items(served, url):
    by_user = defaultdict(list)
    for r in rows_of(served["day"]):
        by_user[r["user_id"]].append(r)
    rows = max(by_user.values(), key=len)[:12]
    assert len(rows) >= 5
    body = request_for(rows)
    _, forward = http(f"{url}/score", body)
    body["items"].reverse()
    _, backward = http(f"{url}/score", body)
    assert forward["scores"] == backward["scores"][::-1]
    assert len(set(forward["scores"])) > 1


def test_unseen_user_and_item_take_the_cold_start_path(served, url, tmp_path):
    day = served["day"]
    fresh = [r for r in rows_of(day) if r["u_has_history"] == 0 and r["i_has_history"] == 0]
    assert fresh, "the sample's last day has a row of a new user with a new item"
    row = dict(fresh[0], user_id="user-never-seen", item_id="item-never-seen", impression_id="cold")
    # the same raw record as a table row with the no-history values the warehouse gives it
    cold_dir = tmp_path / "cold" / f"date={served['as_of']}"
    cold_dir.mkdir(parents=True)
    orc.write_table(pa.Table.from_pylist([row], schema=day.schema), str(cold_dir / "part-0.orc"))
    want = pq.read_table(predict(served["run"], str(cold_dir.parent), tmp_path / "p.parquet"))
    status, body = http(f"{url}/score", request_for([row]))
    assert status == 200, body
    assert abs(body["scores"][0] - want.column("probability")[0].as_py()) <= 1e-6
    # and the snapshot gave it exactly the no-history values of its scene
    hist = served["scorer"].snapshot.history("user-never-seen", np.array(["item-never-seen"], object),
                                            np.array([row["scene"]]))
    assert hist["u_has_history"][0] == hist["i_has_history"][0] == hist["ui_has_history"][0] == 0
    assert hist["u_imp_cum"][0] == hist["i_clk_7d"][0] == hist["ui_imp_hist"][0] == 0
    assert hist["u_ctr_cum_smooth"][0] == row["u_ctr_cum_smooth"]


def test_health_and_metadata(served, url):
    health = {"status": "ok", "model": "fusion", "features_as_of": served["as_of"]}
    assert http(f"{url}/health") == (200, health)
    status, meta = http(f"{url}/metadata")
    assert status == 200
    assert meta["features_as_of"] == served["as_of"] and meta["model"] == "fusion"
    assert meta["model_inputs"]["text"] == [*USER_TEXT_COLUMNS, *ITEM_TEXT_COLUMNS]
    assert "u_ctr_cum_smooth" in meta["model_inputs"]["dense"]
    assert meta["snapshot"]["users"] > 0 and meta["limits"]["max_candidates"] == 50


@pytest.mark.parametrize("mutate, field, words", [
    (lambda b: b["user"].pop("bill_entity_seq"), "user.bill_entity_seq", "Field required"),
    (lambda b: b.pop("items"), "items", "Field required"),
    (lambda b: b["items"][0].update(scene="two"), "items.0.scene", "0, 1, 2, 3 or 4"),
    (lambda b: b["items"][0].update(scene=9), "items.0.scene", "0, 1, 2, 3 or 4"),
    (lambda b: b["items"][1].update(deep_features_3="abc"), "items.1.deep_features_3", "valid number"),
    (lambda b: b["user"].update(user_id=17), "user.user_id", "valid string"),
    (lambda b: b["user"].update(user_id="  "), "user.user_id", "empty"),
    (lambda b: b["items"][0].update(item_titel="typo"), "items.0.item_titel", "Extra inputs"),
    (lambda b: b.update(items=b["items"] * 30), "items", "at most 50 candidates"),
    (lambda b: b.update(user="u1"), "user", "JSON object"),
])
def test_malformed_bodies_get_a_clear_422(served, url, mutate, field, words):
    body = request_for(rows_of(served["day"])[:2])
    mutate(body)
    status, answer = http(f"{url}/score", body)
    assert status == 422, answer
    assert answer["errors"][0]["field"] == field
    assert words in answer["errors"][0]["message"]
    assert answer["detail"].startswith(f"invalid request: {field}: ")
    assert "Traceback" not in json.dumps(answer)


def test_body_that_is_not_json_or_not_an_object_gets_a_422(url):
    status, answer = http(f"{url}/score", raw=b'{"user": ')
    assert status == 422 and answer["errors"][0]["field"] == "body"
    assert "not valid JSON" in answer["detail"]
    status, answer = http(f"{url}/score", raw=b"[1, 2]")
    assert status == 422 and answer["detail"] == "invalid request: body: should be a JSON object"


def test_openapi_documents_the_request_body(url):
    status, doc = http(f"{url}/openapi.json")
    assert status == 200
    body = doc["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    request = doc["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert request["properties"]["items"]["maxItems"] == 50
    item = doc["components"]["schemas"]["Item"]
    assert set(item["required"]) == {"item_id", "scene", *ITEM_TEXT_COLUMNS}
    assert set(DEEP_FEATURES) <= set(item["properties"])


def test_bearer_token_and_body_limit(served, secured_url):
    body = request_for(rows_of(served["day"])[:1])
    assert http(f"{secured_url}/score", body)[0] == 401
    assert http(f"{secured_url}/score", body, {"Authorization": "Bearer wrong"})[0] == 401
    assert http(f"{secured_url}/metadata", headers={"Authorization": f"Basic {TOKEN}"})[0] == 401
    assert http(f"{secured_url}/health")[0] == 200  # open for probes
    ok = {"Authorization": f"Bearer {TOKEN}"}
    status, answer = http(f"{secured_url}/score", body, ok)
    assert status == 200 and len(answer["scores"]) == 1
    big = request_for(rows_of(served["day"])[:10])  # over 4,000 bytes
    status, answer = http(f"{secured_url}/score", big, ok)
    assert status == 413 and "4,000 bytes" in answer["detail"]


def test_empty_candidate_list_scores_nothing(served, url):
    body = request_for(rows_of(served["day"])[:1])
    body["items"] = []
    assert http(f"{url}/score", body)[0:2] == (200, {"scores": [], "model": "fusion",
                                                     "features_as_of": served["as_of"]})


def test_command_line_serves_with_the_token_of_its_environment(served, tmp_path):
    """`python -m serving` (what `trainer serve` runs): a one-line error without a
    snapshot; a real start that takes its bearer token from the environment."""
    cmd = [sys.executable, "-m", "serving", str(served["run"]), "--threads", "1",
           "--log-level", "warning", "--port", "0"]
    missing = subprocess.run([*cmd, "--warehouse", str(tmp_path / "nowhere")],
                             check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1
    assert "snapshot table not found" in missing.stderr and "Traceback" not in missing.stderr
    env = {**os.environ, "SERVE_TEST_TOKEN": TOKEN}
    proc = subprocess.Popen([*cmd, "--warehouse", str(served["warehouse"]), "--token-env", "SERVE_TEST_TOKEN"],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 300
        while "serving" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
        assert "serving" in line and "bearer token from $SERVE_TEST_TOKEN" in line, line
        base = line.split(" on ")[1].split()[0]  # the socket listens before this line is written
        assert http(f"{base}/health")[0] == 200
        assert http(f"{base}/metadata")[0] == 401
        status, meta = http(f"{base}/metadata", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and meta["auth"] == "bearer token"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---------------------------------------------------------------------------- no skew, on the real warehouse


def record_date(log_time: str) -> str:
    """The day of a raw log_time in either format of the log (`yyyy-MM-dd HH:mm:ss`, `yyyy/M/d H:mm`)."""
    day = log_time.strip().split(" ")[0]
    if "/" in day:
        y, m, d = day.split("/")
        day = f"{int(y):04d}-{int(m):02d}-{int(d):02d}"
    return day


def split_raw(src: Path, head: Path) -> tuple[str, list[dict]]:
    """Copy the records of every day but the last into `head` (same part files, same header);
    return the last day and its records."""
    parts = {p: list(csv.DictReader(p.open(newline=""))) for p in sorted(src.glob("*.csv"))}
    last = max(record_date(r["log_time"]) for records in parts.values() for r in records)
    head.mkdir(parents=True)
    for path, records in parts.items():
        with (head / path.name).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(r for r in records if record_date(r["log_time"]) < last)
    return last, [r for records in parts.values() for r in records if record_date(r["log_time"]) == last]


def raw_key(r: dict) -> tuple:
    """What a record and its training_samples row share: ids, scene, texts, deep features."""
    deep = tuple(float(r[c]) if r.get(c) not in (None, "") else 0.0 for c in DEEP_FEATURES)
    texts = (r[c] for c in (*USER_TEXT_COLUMNS, *ITEM_TEXT_COLUMNS))
    return (r["user_id"], r["item_id"], int(r["scene"]), *texts, *deep)


@pytest.mark.slow
@pytest.mark.spark
def test_no_skew_snapshot_of_days_before_scores_like_predict_on_the_full_build(dbt_build, tmp_path):
    """Warehouse of days 1..N-1 -> its snapshot describes the start of day N; day N's raw records
    through /score get, within 1e-6, what `trainer predict` gives their rows of a full build of 1..N."""
    full_raw, head_raw = tmp_path / "raw-full", tmp_path / "raw-head"
    subprocess.run([sys.executable, "-m", "synthetic", "generate", "--rows", "3000", "--days", "5",
                    "--seed", "23", "--parts", "2", "--bad-rate", "0", "--out", str(full_raw), "--quiet"],
                   cwd=ROOT, check=True)
    last_day, records = split_raw(full_raw, head_raw)
    serving = tuple(f"+{m}" for m in SNAPSHOT_MODELS)
    head = dbt_build(head_raw, "serve_head", "--select", *serving, "--exclude", "resource_type:test")
    assert head.success, head.failures()
    full = dbt_build(full_raw, "serve_full", "--select", "+training_samples",
                     "--exclude", "resource_type:test")
    assert full.success, full.failures()
    table = full.table_dir("training_samples")

    run = tmp_path / "run"
    assert main(["fit", "dnn", "--tokens", "--table", str(table), "--out", str(run), "--epochs", "1",
                 "--device", "cpu", "--threads", "1", "--quiet"]) == 0
    preds = pq.read_table(predict(run, str(table), tmp_path / "pred.parquet")).to_pydict()
    probability = dict(zip(preds["impression_id"], preds["probability"]))
    day_rows = ds.dataset(str(table / f"date={last_day}"), format="orc").to_table().to_pylist()
    assert len(day_rows) == len(records) > 100
    for flag in ("u_has_history", "i_has_history", "ui_has_history"):  # every lookup path is exercised
        assert 0 < sum(r[flag] for r in day_rows) < len(day_rows), flag
    want = defaultdict(set)
    for r in day_rows:
        want[raw_key(r)].add(probability[r["impression_id"]])
    # rows that share every raw field share every feature, hence one probability
    assert all(max(v) - min(v) <= 1e-9 for v in want.values())

    scorer = load_scorer(run, head.warehouse_dir, schema=head.schema, threads=1)
    assert scorer.snapshot.as_of == last_day
    by_user = defaultdict(list)
    for r in records:
        by_user[(r["user_id"], *(r[c] for c in USER_TEXT_COLUMNS))].append(r)
    got, expected, cold_users = [], [], 0
    with running(create_app(scorer)) as url:
        for (user_id, *texts), user_records in by_user.items():
            cold_users += scorer.snapshot.user.code([user_id])[0] < 0
            body = {"user": {"user_id": user_id, **dict(zip(USER_TEXT_COLUMNS, texts))},
                    "items": [{"item_id": r["item_id"], "scene": int(r["scene"]),
                               **{c: r[c] for c in ITEM_TEXT_COLUMNS},
                               **{c: float(r[c]) for c in DEEP_FEATURES if r.get(c) not in (None, "")}}
                              for r in user_records]}
            status, answer = http(f"{url}/score", body)
            assert status == 200, answer
            assert answer["features_as_of"] == last_day
            got += answer["scores"]
            expected += [next(iter(want[raw_key(r)])) for r in user_records]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert cold_users > 0 and cold_users < len(by_user)  # both paths: users with and without history
    assert np.std(expected) > 0.01


def test_snapshot_refuses_tables_that_do_not_fit_together(tmp_path):
    table = write_sample_table(tmp_path / "table", rows_per_day=200, days=3, seed=2)
    day = orc.read_table(str(max(table.glob("date=*")) / "part-0.orc"))
    good = write_sample_snapshot(day, "2024-03-03", tmp_path / "a" / "m2ctr.db")
    assert Snapshot(tmp_path / "a").as_of == "2024-03-03"
    # the pair table of another day: a build interrupted between the tables
    other = write_sample_snapshot(day, "2024-03-04", tmp_path / "b" / "m2ctr.db")
    shutil.rmtree(good / "user_item_snapshot")
    shutil.copytree(other / "user_item_snapshot", good / "user_item_snapshot")
    with pytest.raises(TrainerError, match="different days"):
        Snapshot(tmp_path / "a")
    # no null-id row: unknown users would have no values to take
    t = orc.read_table(str(other / "user_features_snapshot" / "scene=1" / "part-0.orc"))
    orc.write_table(t.filter(pc.is_valid(t.column("user_id"))),
                    str(other / "user_features_snapshot" / "scene=1" / "part-0.orc"))
    with pytest.raises(TrainerError, match="null user_id"):
        Snapshot(tmp_path / "b")
