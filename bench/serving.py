"""Online scoring latency: p50, p99 and requests/s of `trainer serve` for 1 user x N candidates.

    python bench/serving.py [--run RUN_DIR --warehouse DIR [--schema S] [--table DIR]]
                            [--candidates 100] [--requests 300] [--cold-requests 20] [--threads 1]

Starts the real service (`python -m serving`, the code behind `trainer serve`) on a free
port of 127.0.0.1 with `--threads` torch threads and no access log, and talks HTTP/1.1 to it over
one keep-alive connection, one request at a time (latency, not concurrency), a bounded number of
requests:

  warm   --requests requests cycling over 20 bodies whose texts the service has seen once
         (untimed): the text vectors and token ids are table lookups
  cold   --cold-requests bodies whose user text and every item title are new, never seen by the
         run nor the disk cache: each request encodes 1 + N texts with the text encoder (and the
         fallback sentence encoder) on the service's CPU

Latency is wall time at the client; "service CPU ms" is the CPU time the service process used per
request (from /proc), which a busy machine does not inflate the way it inflates latency. Then, in
this process, the same warm bodies through the service's steps one by one (JSON parsing and
validation, the training_samples-shaped batch from the snapshot, the run's Features, the model),
wall and CPU time, so the table says what bounds a request.

Each runtime (--runtimes torch onnx) gets its own service, timed in turn.

Without --run it makes its own: a synthetic.sample_table table (--rows-per-day x 6 days), a 1-epoch
fusion run on it, and a snapshot as of its last day (tests/sample_snapshot.py). Request
material (ids, texts, deep features) comes from the last day of --table (default: the run's table).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parents[1]
# Run as `python bench/serving.py`, this directory comes first on sys.path, and bench/embeddings.py
# would shadow the embeddings package the run's featurizer imports.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from m2ctr.schema import DEEP_FEATURES, ITEM_TEXT_COLUMNS, USER_TEXT_COLUMNS
from m2ctr.warehouse import DEFAULT_SCHEMA, schema_dir

WARM_BODIES = 20


def make_run(root: Path, rows_per_day: int) -> tuple[Path, Path, Path]:
    from pyarrow import orc

    from synthetic.sample_table import write_sample_table
    from tests.sample_snapshot import write_sample_snapshot
    from trainer.cli import main

    table = write_sample_table(root / "table", rows_per_day=rows_per_day, days=6, seed=1)
    run = root / "run"
    argv = ["fit", "fusion", "--table", str(table), "--out", str(run), "--epochs", "1", "--device", "cpu",
            "--threads", "1", "--cache-dir", str(root / "cache"), "--quiet"]
    if main(argv) != 0:
        raise SystemExit("error: could not fit the benchmark run")
    last = max(table.glob("date=*"))
    write_sample_snapshot(orc.read_table(str(last / "part-0.orc")), last.name.removeprefix("date="),
                          schema_dir(root / "warehouse", DEFAULT_SCHEMA), fill_unseen=True)
    return run, root / "warehouse", table


def last_day_rows(table: Path) -> list[dict]:
    days = sorted(p for p in table.glob("date=*"))
    if not days:
        raise SystemExit(f"error: {table} has no date=YYYY-MM-DD partitions")
    columns = ["user_id", "item_id", "scene", *USER_TEXT_COLUMNS, *ITEM_TEXT_COLUMNS, *DEEP_FEATURES]
    return ds.dataset(str(days[-1]), format="orc").to_table(columns=columns).to_pylist()


def bodies(rows: list[dict], n: int, candidates: int, rng, nonce: str | None = None) -> list[bytes]:
    """n request bodies, each one user and `candidates` items drawn from `rows`. With a nonce, the
    user's text and every item title carry a word never seen before."""
    out = []
    for k in range(n):
        u = rows[rng.integers(len(rows))]
        user = {"user_id": u["user_id"], **{c: u[c] for c in USER_TEXT_COLUMNS}}
        items = []
        for j, i in enumerate(rng.integers(0, len(rows), candidates)):
            r = rows[i]
            items.append({"item_id": r["item_id"], "scene": r["scene"],
                          **{c: r[c] for c in (*ITEM_TEXT_COLUMNS, *DEEP_FEATURES)}})
            if nonce:
                items[-1]["item_title"] = f"{r['item_title']} {nonce}{k}x{j}"
        if nonce:
            user["query_entity_seq"] = f"{user['query_entity_seq']},{nonce}{k}"
        out.append(json.dumps({"user": user, "items": items}).encode())
    return out


class Client:
    def __init__(self, host: str, port: int):
        self.conn = http.client.HTTPConnection(host, port, timeout=120)

    def post(self, body: bytes) -> tuple[float, dict]:
        t0 = time.perf_counter()
        self.conn.request("POST", "/score", body, {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise SystemExit(f"error: /score answered {resp.status}: {data[:300]!r}")
        return elapsed, json.loads(data)


def start_service(run: Path, warehouse: Path, schema: str, threads: int, candidates: int, runtime: str):
    cmd = [sys.executable, "-m", "serving", str(run), "--warehouse", str(warehouse),
           "--schema", schema, "--port", "0", "--threads", str(threads), "--log-level", "warning",
           "--runtime", runtime,
           "--max-candidates", str(max(candidates, 1000))]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("M2CTR_SERVE_TOKEN", None)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    said = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        said = [*said[-20:], line]
        if not line and proc.poll() is not None:
            raise SystemExit(f"error: the service exited with {proc.returncode}:\n{''.join(said)}")
        if line.startswith("serving "):
            host, port = line.split("http://")[1].split()[0].rsplit(":", 1)
            return proc, host, int(port)
    proc.kill()
    raise SystemExit("error: the service did not start within 600 s")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(client: Client, pid: int, requests: list[bytes]) -> tuple[list[float], float, float]:
    """Latency of each request, wall seconds of all, and the CPU seconds the service spent on them."""
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    times = [client.post(b)[0] for b in requests]
    return times, time.perf_counter() - t0, cpu_seconds(pid) - cpu0


def summarise(name: str, seconds: list[float], candidates: int, wall: float, cpu: float) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"case": name, "requests": len(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
            "service_cpu_ms": cpu * 1000 / len(ms),
            "req_per_s": len(ms) / wall, "candidates_per_s": len(ms) * candidates / wall}


def breakdown(run: Path, warehouse: Path, schema: str, threads: int, warm: list[bytes], candidates: int,
              repeats: int, runtime: str) -> dict:
    """Median wall and CPU (this thread) milliseconds of each step of a warm request, in this process."""
    from serving import load_scorer
    from serving.payload import score_request
    from trainer.scoring import score, to_model

    scorer = load_scorer(run, warehouse, schema=schema, threads=threads, runtime=runtime)
    request = score_request(max(candidates, 1000))
    names = ("parse + validate", "batch from snapshot", "Features (prep + text)", "model")
    wall, cpu = {k: [] for k in names}, {k: [] for k in names}
    for b in warm:  # the texts enter this process's tables
        req = request.model_validate_json(b)
        scorer.score(req.user, req.items)
    for _ in range(repeats):
        for b in warm:
            marks = [(time.perf_counter(), time.thread_time())]
            req = request.model_validate_json(b)
            marks.append((time.perf_counter(), time.thread_time()))
            batch = scorer.batch(req.user, req.items)
            marks.append((time.perf_counter(), time.thread_time()))
            arrays = scorer.run.features(batch)
            marks.append((time.perf_counter(), time.thread_time()))
            if scorer.onnx is not None:
                scorer.onnx(to_model(arrays, scorer.run.features, scorer.run.device))
            else:
                score(scorer.run.model, [arrays], scorer.run.features, scorer.run.device)
            marks.append((time.perf_counter(), time.thread_time()))
            for k, (w0, c0), (w1, c1) in zip(names, marks, marks[1:]):
                wall[k].append((w1 - w0) * 1000)
                cpu[k].append((c1 - c0) * 1000)
    return {k: {"wall_ms": float(np.median(wall[k])), "cpu_ms": float(np.median(cpu[k]))} for k in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, help="a run directory (default: fit a small fusion run)")
    ap.add_argument("--warehouse", type=Path, help="warehouse holding the snapshot (needed with --run)")
    ap.add_argument("--schema", default=DEFAULT_SCHEMA, help="warehouse schema (default %(default)s)")
    ap.add_argument("--table", type=Path, help="training_samples to draw request material from "
                    "(default: the run's table)")
    ap.add_argument("--rows-per-day", type=int, default=5000, help="sample table size without --run "
                    "(default %(default)s)")
    ap.add_argument("--candidates", type=int, default=100, help="items per request (default %(default)s)")
    ap.add_argument("--requests", type=int, default=300, help="timed warm requests (default %(default)s)")
    ap.add_argument("--cold-requests", type=int, default=20, help="timed cold requests (default %(default)s)")
    ap.add_argument("--threads", type=int, default=1,
                    help="the service's torch threads (default %(default)s)")
    ap.add_argument("--runtimes", nargs="+", choices=["torch", "onnx"], default=["torch", "onnx"],
                    help="what scores in the service, each timed in turn (default: both)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if (args.run is None) != (args.warehouse is None):
        raise SystemExit("error: --run and --warehouse go together")

    tmp = tempfile.TemporaryDirectory(prefix="bench-serving-")
    if args.run is None:
        print(f"fitting a fusion run on {args.rows_per_day:,} rows/day x 6 days ...", file=sys.stderr)
        run, warehouse, table = make_run(Path(tmp.name), args.rows_per_day)
        schema = DEFAULT_SCHEMA
    else:
        from trainer.artifacts import RunDir

        run, warehouse, schema = args.run, args.warehouse, args.schema
        table = args.table or Path(RunDir(run).config()["table"])
    rows = last_day_rows(table)
    rng = np.random.default_rng(0)
    warm = bodies(rows, WARM_BODIES, args.candidates, rng)

    load = os.getloadavg()[0]
    results, steps = [], {}
    for runtime in args.runtimes:
        # new to this service and to the disk cache the previous one filled
        cold = bodies(rows, args.cold_requests, args.candidates, rng, nonce=f"zq{os.getpid()}t{time.time_ns()}")
        proc, host, port = start_service(run, warehouse, schema, args.threads, args.candidates, runtime)
        try:
            client = Client(host, port)
            for b in warm:  # untimed: the warm bodies' texts enter the service's tables
                client.post(b)
            times, wall, cpu = timed(client, proc.pid, [warm[k % len(warm)] for k in range(args.requests)])
            results.append(summarise(f"{runtime} warm", times, args.candidates, wall, cpu))
            if cold:
                times, wall, cpu = timed(client, proc.pid, cold)
                results.append(summarise(f"{runtime} cold", times, args.candidates, wall, cpu))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        steps[runtime] = breakdown(run, warehouse, schema, args.threads, warm, args.candidates,
                                   repeats=max(1, args.requests // WARM_BODIES // 3), runtime=runtime)

    print(f"\n1 user x {args.candidates} candidates, service on 1 process with {args.threads} "
          "torch thread(s), "
          f"one request at a time; load average at start {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'case':<11} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'service CPU ms':>15} "
          f"{'req/s':>7} {'cand/s':>8}")
    for r in results:
        print(f"{r['case']:<11} {r['requests']:>8} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['mean_ms']:>8.1f} "
              f"{r['service_cpu_ms']:>15.1f} {r['req_per_s']:>7.1f} {r['candidates_per_s']:>8,.0f}")
    print("(service CPU ms: CPU time the service process spent per request, all its threads; on a busy "
          "machine latency exceeds it by the time the service waits for a CPU)")
    for runtime, by_step in steps.items():
        print(f"\nwarm request with the {runtime} runtime, step by step in this process (median ms):")
        print(f"  {'step':<24} {'wall':>7} {'CPU':>7}")
        for k, v in by_step.items():
            print(f"  {k:<24} {v['wall_ms']:7.2f} {v['cpu_ms']:7.2f}")
        print(f"  {'sum':<24} {sum(v['wall_ms'] for v in by_step.values()):7.2f} "
              f"{sum(v['cpu_ms'] for v in by_step.values()):7.2f}  (the rest: HTTP, ASGI, JSON out)")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "steps_ms": steps, "load_average": load,
                                         "threads": args.threads, "candidates": args.candidates}, indent=2))


if __name__ == "__main__":
    main()
