"""Scale: warehouse build and trainer at 1M and 4M rows (or any sizes), printed as one table.

    python bench/scale.py [--rows 1000000 4000000] [--users U --items I] [--days 14] [--seed 7]
                          [--data-dir data/scale] [--cache-dir DIR] [--skip STEP ...]
                          [--raw DIR] [--warehouse DIR] [--epochs 1] [--threads 2] [--nproc 2]
                          [--backend auto]

For each size N, every step a child process of its own:

  generate  python -m synthetic generate --rows N --days D --seed S --quiet into DATA/<N>/raw
            (reused when a manifest.json with the same arguments is already there)
  build     the full `dbt build`: the first run into an emptied DATA/<N>/warehouse
  validate  python -m expectations validate: every Great Expectations suite over that build
            (report under DATA/<N>/quality)
  texts     unique user and item texts of the table, per side (cheap: no encoder):
            bench/encode_texts.py count
  encode    what `fit fusion` does before training: fit the preprocessing and the text side on the
            training days, then add the validation and test texts, every unique text through the
            two frozen encoders (--backend) into --cache-dir, with each encoder's count and
            seconds; run again when it encoded anything, to time the second run, which reads the
            cache. The step runs bench/encode_texts.py encode; alone, on any built table:
            python bench/encode_texts.py encode TABLE --cache-dir DIR
  fusion    trainer fit fusion (reads the cache the encode step filled)
  tokens    trainer fit mmoe --tokens (content ids: no encoder), --threads T
  tokens-1t the same on one thread: what each torchrun rank gets
  torchrun  torchrun --nproc-per-node P -m trainer fit mmoe --tokens: P processes with
            T/P threads and batch/P rows each, the same cores and effective batch as `tokens`

Reported per step: wall time; peak RSS as getrusage reports it for the child (its largest
process: the trainer, or one torchrun rank) and the sampled peak of the sum over the child's
process tree (dbt with its JVM, all torchrun ranks); for fits, seconds per training epoch and
samples/s from the run's history.json, and the test AUC; `load`, the mean 1-minute load average
while the step ran. Then the ratios the scaling claims rest
on: peak RSS of `fit fusion` at the largest size over the smallest (should stay near 1, memory
growing with unique texts, never with rows) and the torchrun speed-up.

`--users` / `--items` hold the id population fixed across sizes. The generator's default
population grows with the rows (users = rows/10, items = rows/40), so its unique texts, and with
them the text tables and the encoding time, grow with the rows too; a fixed population isolates
what rows alone cost, and its texts are the same at every size, so the cache encodes them once.

Results also land in DATA/results.jsonl (one JSON object per step), child logs in DATA/<N>/logs.
Timings on a machine shared with other jobs are upper bounds; peak RSS does not depend on load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENCODE_TEXTS = ROOT / "bench" / "encode_texts.py"  # the child script of the texts and encode steps

from bench.measure import Measured, run_measured
from embeddings.backends import CHOICES, DEFAULT_BACKEND
from m2ctr.warehouse import DEFAULT_SCHEMA, TRAINING_SAMPLES, table_path

STEPS = ("generate", "build", "validate", "texts", "encode", "fusion", "tokens", "tokens-1t", "torchrun")
FITS = {"fusion": ["fusion"], "tokens": ["mmoe", "--tokens"], "tokens-1t": ["mmoe", "--tokens"],
        "torchrun": ["mmoe", "--tokens"]}


# ---------------------------------------------------------------------------- the steps


@dataclass
class Result:
    rows: int
    step: str
    population: str = "default"  # the generator's id population: "default" or "u<users>-i<items>"
    wall_s: float | None = None
    rss_mb: float | None = None
    tree_rss_mb: float | None = None
    epoch_s: float | None = None
    samples_per_s: float | None = None
    test_auc: float | None = None
    load: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, rows: int, step: str, m: Measured | None = None, **kw) -> Result:
        if m is None:
            return cls(rows, step, **kw)
        return cls(rows, step, wall_s=m.wall_s, rss_mb=m.rss_mb, tree_rss_mb=m.tree_rss_mb, load=m.load, **kw)


class Failed(Exception):
    pass


def checked(m: Measured, log: Path, what: str) -> Measured:
    if m.rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise Failed(f"{what} exited {m.rc}: {tail[0][:300]} (log: {log})")
    return m


class Size:
    """The directories and steps of one size."""

    def __init__(self, a, rows: int):
        self.a, self.rows = a, rows
        pop = "-".join([f"u{a.users}"] * bool(a.users) + [f"i{a.items}"] * bool(a.items))
        self.population = pop or "default"
        self.dir = Path(a.data_dir) / (f"{rows}-{pop}" if pop else str(rows))
        self.raw = Path(a.raw) if a.raw else self.dir / "raw"
        self.warehouse = Path(a.warehouse) if a.warehouse else self.dir / "warehouse"
        self.table = table_path(TRAINING_SAMPLES, self.warehouse, DEFAULT_SCHEMA)
        self.logs = self.dir / "logs"

    def result(self, step: str, m: Measured | None = None, **kw) -> Result:
        return Result.of(self.rows, step, m, population=self.population, **kw)

    def log(self, step: str) -> Path:
        return self.logs / f"{step}-{datetime.now():%Y%m%d-%H%M%S}.log"

    # -- generate

    def generator_args(self) -> dict:
        return {"rows": self.rows, "days": self.a.days, "seed": self.a.seed,
                "users": self.a.users, "items": self.a.items}

    def generated(self) -> bool:
        try:
            args = json.loads((self.raw / "manifest.json").read_text())["args"]
        except (OSError, ValueError, KeyError):
            return False
        return all(args.get(k) == v for k, v in self.generator_args().items())

    def generate(self) -> Result:
        if self.generated():
            return self.result("generate", note=f"reused {self.raw}")
        if self.a.raw:
            raise Failed(f"--raw {self.raw}: no manifest.json from the generator with "
                         f"{self.generator_args()}")
        cmd = [sys.executable, "-m", "synthetic", "generate", "--rows", self.rows, "--days", self.a.days,
               "--seed", self.a.seed, "--out", self.raw, "--quiet"]
        cmd += ["--users", self.a.users] if self.a.users else []
        cmd += ["--items", self.a.items] if self.a.items else []
        log = self.log("generate")
        m = checked(run_measured(cmd, log, cwd=ROOT), log, "generate")
        size = sum(p.stat().st_size for p in self.raw.glob("*.csv"))
        return self.result("generate", m, note=f"{size / 2**30:.2f} GiB CSV")

    # -- build

    def build(self) -> Result:
        if self.a.warehouse:
            raise Failed("--warehouse names a build to reuse; skip the build step (--skip build)")
        if not any(self.raw.glob("*.csv")):
            raise Failed(f"no *.csv under {self.raw}: run the generate step or pass --raw DIR")
        shutil.rmtree(self.warehouse, ignore_errors=True)  # a full build: the first into an empty dir
        self.warehouse.mkdir(parents=True)
        dbt_dir = self.dir / "dbt"
        cmd = [Path(sys.executable).parent / "dbt", "build", "--profiles-dir", ROOT,
               "--target-path", dbt_dir / "target", "--log-path", dbt_dir / "logs"]
        log = self.log("build")
        m = checked(run_measured(cmd, log, env=self.env(), cwd=Path(self.a.project_dir)), log, "dbt build")
        rows = table_rows(self.table)
        return self.result("build", m, note=f"{rows:,} training rows", extra={"training_rows": rows})

    def env(self) -> dict:
        """Where the build and the validation read and write."""
        return {"CTR_RAW_PATH": str(self.raw.resolve()), "CTR_WAREHOUSE_DIR": str(self.warehouse.resolve()),
                "CTR_DBT_TARGET": "local", "CTR_SCHEMA": DEFAULT_SCHEMA}

    # -- validate

    def validate(self) -> Result:
        self.need_table()
        cmd = [sys.executable, "-m", "expectations", "validate", "--target", "local",
               "--report-dir", self.dir / "quality"]
        log = self.log("validate")
        m = checked(run_measured(cmd, log, env=self.env(), cwd=ROOT), log, "expectations validate")
        summary = json.loads((self.dir / "quality" / "summary.json").read_text())
        return self.result("validate", m, note=f"every suite passed ({summary_counts(summary)})")

    # -- texts and encode

    def need_table(self) -> None:
        if not self.table.is_dir():
            raise Failed(f"no table at {self.table}: run the build step or pass --warehouse DIR")

    def texts(self) -> Result:
        self.need_table()
        log = self.log("texts")
        cmd = [sys.executable, ENCODE_TEXTS, "count", self.table]
        m = checked(run_measured(cmd, log, cwd=ROOT), log, "encode_texts.py count")
        counts = last_json(log)
        note = f"{counts['user']:,} user + {counts['item']:,} item texts ({counts['distinct']:,} distinct non-empty)"
        return self.result("texts", m, note=note, extra=counts)

    def encode(self) -> list[Result]:
        self.need_table()
        out = []
        for attempt in ("first", "again"):
            log = self.log(f"encode-{attempt}")
            cmd = [sys.executable, ENCODE_TEXTS, "encode", self.table,
                   "--cache-dir", self.a.cache_dir, "--threads", self.a.threads, "--backend", self.a.backend]
            m = checked(run_measured(cmd, log, cwd=ROOT), log, "encode_texts.py encode")
            r = last_json(log)
            r["n_encoded"] = r["encoded"]["text"] + r["encoded"]["sentence"]
            hits = r["cache_hits"]["text"] + r["cache_hits"]["sentence"]
            note = (f"{r['unique']['user']:,} user + {r['unique']['item']:,} item texts; "
                    f"{r['n_encoded']:,} encoded ({r['encoded']['text']:,} text in {r['encode_s']['text']:.0f} s, "
                    f"{r['encoded']['sentence']:,} sentence in {r['encode_s']['sentence']:.0f} s, {r['backend']}), "
                    f"{hits:,} read from the cache; text side {r['text_side_s']:.1f} s")
            out.append(self.result("encode" if r["n_encoded"] else "encode (cached)", m,
                                 note=note, extra=r))
            if not r["n_encoded"]:
                break
        if len(out) == 2:  # the second run's text side is the reading alone: the rest is encoding
            first, again = out[0].extra, out[1].extra
            rate = first["n_encoded"] / max(first["text_side_s"] - again["text_side_s"], 1e-9)
            first["texts_per_s"] = rate
            out[0].note += f"; {rate:,.1f} texts/s"
        return out

    # -- fits

    def fit(self, step: str) -> Result:
        self.need_table()
        a = self.a
        run = self.dir / "runs" / f"{step}-{datetime.now():%Y%m%d-%H%M%S}"
        args = [*FITS[step], "--table", self.table, "--out", run, "--epochs", a.epochs,
                "--patience", a.epochs, "--seed", a.seed, "--cache-dir", a.cache_dir,
                "--encoder-backend", a.backend, "--quiet"]
        if step == "torchrun":
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                   a.nproc, "-m", "trainer", "fit", *args, "--threads", max(1, a.threads // a.nproc),
                   "--batch-size", max(1, a.batch_size // a.nproc)]
        else:
            cmd = [sys.executable, "-m", "trainer", "fit", *args,
                   "--threads", 1 if step == "tokens-1t" else a.threads, "--batch-size", a.batch_size]
        log = self.log(step)
        m = checked(run_measured(cmd, log, cwd=ROOT), log, f"fit {step}")
        history = json.loads((run / "history.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        train_rows = metrics["split"]["rows"]["train"]
        rates = [h["samples_per_s"] for h in history]
        note = f"{len(history)} epoch(s) of {train_rows:,} rows"
        if step == "torchrun":
            note += f"; {a.nproc} x {max(1, a.threads // a.nproc)} threads"
        return self.result(step, m, epoch_s=sum(train_rows / r for r in rates) / len(rates),
                         samples_per_s=sum(rates) / len(rates), test_auc=metrics["test"]["auc"],
                         note=note, extra={"run": str(run), "history": history})


def summary_counts(summary: dict) -> str:
    """`suite expectations` of each suite in a validation's summary.json."""
    return ", ".join(f"{name} {len(suite.get('expectations', []))}" for name, suite in summary["suites"].items())


def table_rows(path: Path) -> int:
    from trainer.table import Table

    t = Table(path)
    return t.count_rows(t.fragments(t.days))


def last_json(log: Path) -> dict:
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise Failed(f"no JSON result in {log}")


# ---------------------------------------------------------------------------- table and main


def fmt(v, spec: str) -> str:
    width = len(format(0.0, spec)) if spec[:1].isdigit() else 0
    return "-".rjust(width) if v is None else format(v, spec)


def print_table(results: list[Result]) -> None:
    head = (f"{'rows':>11} {'population':<12} {'step':<16} {'wall s':>8} {'RSS MB':>8} {'tree MB':>8} {'epoch s':>8} "
            f"{'samples/s':>10} {'test AUC':>8} {'load':>5}  note")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r.rows:>11,} {r.population:<12} {r.step:<16} {fmt(r.wall_s, '8.1f')} {fmt(r.rss_mb, '8.0f')} "
              f"{fmt(r.tree_rss_mb, '8.0f')} {fmt(r.epoch_s, '8.1f')} {fmt(r.samples_per_s, '10,.0f')} "
              f"{fmt(r.test_auc, '8.4f')} {fmt(r.load, '5.1f')}  {r.note}")


def print_ratios(results: list[Result], nproc: int) -> None:
    for pop in dict.fromkeys(r.population for r in results):
        def of(step, pop=pop):
            return sorted((r for r in results if r.step == step and r.population == pop and r.rss_mb),
                          key=lambda r: r.rows)

        where = "generator's default population" if pop == "default" else f"fixed population {pop}"
        fusion, tokens, one_thread = of("fusion"), of("tokens"), of("tokens-1t")
        if len(fusion) >= 2:
            lo, hi = fusion[0], fusion[-1]
            ratio = hi.rss_mb / lo.rss_mb
            print(f"fit fusion peak RSS ({where}): {hi.rows / lo.rows:.1f}x rows -> {ratio:.2f}x "
                  f"({lo.rss_mb:,.0f} MB at {lo.rows:,} rows, {hi.rss_mb:,.0f} MB at {hi.rows:,}); "
                  f"target <= 1.30x: {'met' if ratio <= 1.3 else 'NOT met'}")
        if len(tokens) >= 2:
            print(f"fit mmoe --tokens peak RSS ({where}): {tokens[-1].rows / tokens[0].rows:.1f}x rows -> "
                  f"{tokens[-1].rss_mb / tokens[0].rss_mb:.2f}x ({tokens[0].rss_mb:,.0f} -> {tokens[-1].rss_mb:,.0f} MB)")
        for ddp in of("torchrun"):
            for single, how in ((tokens, "1 process"), (one_thread, "1 process on 1 thread")):
                same = [r for r in single if r.rows == ddp.rows and r.samples_per_s]
                if same and ddp.samples_per_s:
                    print(f"torchrun at {ddp.rows:,} rows ({where}): {nproc} processes {ddp.samples_per_s:,.0f} "
                          f"samples/s vs {how} {same[0].samples_per_s:,.0f} "
                          f"({ddp.samples_per_s / same[0].samples_per_s:.2f}x)")
    rates = [r.extra["texts_per_s"] for r in results if "texts_per_s" in r.extra]
    for t in (r for r in results if r.step == "texts") if rates else ():
        # two frozen encoders (text vector and fallback sentence vector) read every distinct text
        print(f"encoding the {t.extra['distinct']:,} distinct texts of {t.rows:,} rows ({t.population}) into "
              f"an empty cache: about {2 * t.extra['distinct'] / rates[0] / 3600:.1f} h at {rates[0]:,.1f} texts/s")


def summary(path: Path, nproc: int) -> int:
    """The table and ratios of everything in results.jsonl: per size, population and step, the latest."""
    if not path.is_file():
        print(f"error: no results yet at {path}", file=sys.stderr)
        return 1
    latest: dict = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        r.pop("at", None)
        latest[(r["rows"], r.get("population", "default"), r["step"])] = Result(**r)
    results = sorted(latest.values(), key=lambda r: (r.population, r.rows, STEPS.index(r.step.split()[0])))
    print_table(results)
    print()
    print_ratios(results, nproc)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000], metavar="N",
                   help="sizes to run, smallest first (default: %(default)s)")
    p.add_argument("--days", type=int, default=14, help="days of logs (default %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="generator and trainer seed (default %(default)s)")
    p.add_argument("--users", type=int, help="fixed user population (default: the generator's, rows/10)")
    p.add_argument("--items", type=int, help="fixed item population (default: the generator's, rows/40)")
    p.add_argument("--data-dir", default="data/scale",
                   help="raw logs, warehouses, runs and logs, one directory per size (default %(default)s)")
    p.add_argument("--raw", help="existing generator output to reuse (one size only; skips generating)")
    p.add_argument("--warehouse", help="existing CTR_WAREHOUSE_DIR to reuse (one size only; use with --skip build)")
    p.add_argument("--project-dir", default=str(ROOT / "warehouse"),
                   help="dbt project to build (default %(default)s)")
    p.add_argument("--cache-dir", help="text vector cache (default: DATA/text-cache)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=CHOICES,
                   help="encoder backend of the encode and fusion steps (default %(default)s)")
    p.add_argument("--skip", nargs="+", choices=STEPS, default=[], metavar="STEP",
                   help=f"steps to leave out, of: {', '.join(STEPS)}")
    p.add_argument("--epochs", type=int, default=1, help="epochs per fit (default %(default)s)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads of one process; torchrun ranks share them (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=1024,
                   help="training batch; torchrun ranks take batch/nproc each (default %(default)s)")
    p.add_argument("--nproc", type=int, default=2, help="torchrun processes (default %(default)s)")
    p.add_argument("--summary", action="store_true",
                   help="run nothing: print the table of DATA/results.jsonl (latest result per size and step)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.summary:
        return summary(Path(a.data_dir) / "results.jsonl", a.nproc)
    if (a.raw or a.warehouse) and len(a.rows) != 1:
        print("error: --raw and --warehouse name one size's data; give one --rows", file=sys.stderr)
        return 2
    if min(a.rows) < 1 or a.epochs < 1 or a.threads < 1 or a.nproc < 1:
        print("error: --rows, --epochs, --threads and --nproc must be at least 1", file=sys.stderr)
        return 2
    # absolute: dbt runs from the project directory, where a relative path would land elsewhere
    a.data_dir = str(Path(a.data_dir).resolve())
    a.cache_dir = str(Path(a.cache_dir or Path(a.data_dir) / "text-cache").resolve())
    results: list[Result] = []
    failed = False
    Path(a.data_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(a.data_dir) / "results.jsonl", "a") as sink:
        for rows in a.rows:
            size = Size(a, rows)
            for step in (s for s in STEPS if s not in a.skip):
                print(f"[{datetime.now():%H:%M:%S}] {rows:,} rows: {step} ...", file=sys.stderr, flush=True)
                try:
                    if step in FITS:
                        done = [size.fit(step)]
                    else:
                        done = getattr(size, step)()
                        done = done if isinstance(done, list) else [done]
                except Failed as e:
                    print(f"error: {rows:,} rows, {step}: {e}", file=sys.stderr)
                    failed = True
                    break  # later steps of this size need this one
                for r in done:
                    results.append(r)
                    sink.write(json.dumps({"at": datetime.now().isoformat(timespec="seconds"), **asdict(r)}) + "\n")
                    sink.flush()
                    print(f"    {r.step}: {fmt(r.wall_s, '.1f')} s, peak RSS {fmt(r.rss_mb, ',.0f')} MB "
                          f"(tree {fmt(r.tree_rss_mb, ',.0f')} MB), load {fmt(r.load, '.1f')}  {r.note}",
                          file=sys.stderr, flush=True)
    print()
    print_table(results)
    print()
    print_ratios(results, a.nproc)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
