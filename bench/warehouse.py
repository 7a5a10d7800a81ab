"""Warehouse benchmark: a full build, a new day and a run with nothing new, beside DuckDB.

For each size, generates AntM2C-shaped logs (`python -m synthetic generate`, by default with
AntM2C's population: 70,000 users and 80,000 items) split into one `date=YYYY-MM-DD/` folder per
day, and times real `dbt build`s (local target), each in a fresh process (JVM start-up, every
model and data test included; the dbt unit tests are excluded, as in `make features`, and the
JVM maps the class-data archive of `python -m m2ctr.jvm archive` when there is one, as there):

- full build: every day, into an empty warehouse;
- new day: the last day added to a warehouse built from the days before it (that build is not
  timed), the daily run of a warehouse in production; with --day-runs N, N times, each to a copy
  of the same build, and the median run reported (runs drift with the machine's load);
- nothing new: the same run again, with no new, changed or removed file.

The daily runs share dbt's target directory, as a project's runs in production do, so each one
parses only what changed since the last (dbt's partial parsing); the full build parses from scratch.

Beside them, the same point-in-time feature SQL in DuckDB on the same CSV, as a single-machine
reference: it parses the CSV, drops malformed records, and writes the user / item / pair features
and the joined training table to Parquet; it has no quarantine, no incremental state and no tests.

Every timed build is printed with `load`, the mean 1-minute load average while it ran: on a shared
machine the figures move with it, so compare builds made under the same load. The slowest nodes
of each timed build (dbt's run_results.json) follow the table.

    .venv/bin/python bench/warehouse.py --rows 1000000
    .venv/bin/python bench/warehouse.py --rows 10000000 --workdir /data/bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # for bench.measure; last, so the installed packages are the ones timed

from bench.measure import run_measured
from m2ctr.jvm import java_options
from synthetic.days import split_by_day
from synthetic.generate import BASE_COLUMNS, DEEP_COLUMNS

PROJECT = ROOT / "warehouse"

# The feature definitions of warehouse/models, in DuckDB's dialect. DuckDB's parallel CSV
# scanner cannot pad short records when quoted fields hold newlines, hence parallel = false.
DUCKDB_SQL = """
create or replace table raw as
select * from read_csv('{raw}/*.csv', auto_detect = false, header = true, delim = ',',
                       columns = {columns}, quote = '"',
                       escape = '"', null_padding = true, ignore_errors = true,
                       strict_mode = false, parallel = false);

create or replace table stg as
with typed as (
    select
        user_id, item_id,
        coalesce(try_strptime(trim(log_time), '%Y-%m-%d %H:%M:%S'),
                 try_strptime(trim(log_time), '%Y/%-m/%-d %-H:%M')) as log_ts,
        try_cast(label as integer) as label,
        try_cast(scene as integer) as scene,
        * exclude (user_id, item_id, log_time, label, scene)
    from raw
)
select *, cast(log_ts as date) as date, cast(log_ts as date) - date '1970-01-01' as day_number
from typed
where coalesce(trim(user_id), '') <> '' and coalesce(trim(item_id), '') <> ''
    and log_ts is not null and label in (0, 1) and scene between 0 and 4;

create or replace table user_features as
with daily as (
    select user_id, date, any_value(day_number) as day_number, count(*) as imp, sum(label) as clk,
        {scene_sums}
    from stg group by user_id, date
)
select user_id, date,
    coalesce(sum(imp) over w7, 0) as u_imp_7d, coalesce(sum(clk) over w7, 0) as u_clk_7d,
    coalesce(sum(imp) over wc, 0) as u_imp_cum, coalesce(sum(clk) over wc, 0) as u_clk_cum,
    {scene_windows},
    coalesce(date - min(date) over wc, 0) as u_days_since_first,
    max(date) over wc as u_last_hist_date
from daily
window w7 as (partition by user_id order by day_number range between 7 preceding and 1 preceding),
       wc as (partition by user_id order by day_number
              range between unbounded preceding and 1 preceding);

create or replace table item_features as
with daily as (
    select item_id, date, any_value(day_number) as day_number, count(*) as imp, sum(label) as clk,
        {scene_sums}
    from stg group by item_id, date
)
select item_id, date,
    coalesce(sum(imp) over w7, 0) as i_imp_7d, coalesce(sum(clk) over w7, 0) as i_clk_7d,
    coalesce(sum(imp) over wc, 0) as i_imp_cum, coalesce(sum(clk) over wc, 0) as i_clk_cum,
    {scene_windows_i},
    coalesce(date - min(date) over wc, 0) as i_days_since_first,
    max(date) over wc as i_last_hist_date
from daily
window w7 as (partition by item_id order by day_number range between 7 preceding and 1 preceding),
       wc as (partition by item_id order by day_number
              range between unbounded preceding and 1 preceding);

create or replace table pair_history as
with daily as (
    select user_id, item_id, date, any_value(day_number) as day_number,
        count(*) as imp, sum(label) as clk
    from stg group by user_id, item_id, date
)
select user_id, item_id, date,
    coalesce(sum(imp) over wc, 0) as ui_imp_hist, coalesce(sum(clk) over wc, 0) as ui_clk_hist,
    max(date) over wc as ui_last_hist_date
from daily
window wc as (partition by user_id, item_id order by day_number
              range between unbounded preceding and 1 preceding);

create or replace table scene_priors as
with daily as (
    select scene, date, any_value(day_number) as day_number, count(*) as imp, sum(label) as clk
    from stg group by scene, date
)
select scene, date,
    coalesce(sum(clk) over wc / sum(imp) over wc, {prior}) as prior
from daily
window wc as (partition by scene order by day_number
              range between unbounded preceding and 1 preceding);

copy (
    select stg.* exclude (day_number), u.* exclude (user_id, date), i.* exclude (item_id, date),
        p.* exclude (user_id, item_id, date),
        (u.u_clk_cum + {m} * s.prior) / (u.u_imp_cum + {m}) as u_ctr_cum_smooth,
        (i.i_clk_cum + {m} * s.prior) / (i.i_imp_cum + {m}) as i_ctr_cum_smooth
    from stg
    left join user_features u using (user_id, date)
    left join item_features i using (item_id, date)
    left join pair_history p using (user_id, item_id, date)
    left join scene_priors s using (scene, date)
) to '{out}' (format parquet);
"""


def duckdb_sql(raw: Path, out: Path) -> str:
    sums = ", ".join(
        f"count_if(scene = {s}) as imp_s{s}, count_if(scene = {s} and label = 1) as clk_s{s}"
        for s in range(5)
    )

    def windows(p: str) -> str:
        return ", ".join(
            f"coalesce(sum(imp_s{s}) over wc, 0) as {p}_imp_cum_s{s}, "
            f"coalesce(sum(clk_s{s}) over wc, 0) as {p}_clk_cum_s{s}"
            for s in range(5)
        )

    names = BASE_COLUMNS + DEEP_COLUMNS
    columns = "{" + ", ".join(f"'{n}': 'VARCHAR'" for n in names) + "}"
    return DUCKDB_SQL.format(
        columns=columns,
        raw=raw,
        out=out,
        scene_sums=sums,
        scene_windows=windows("u"),
        scene_windows_i=windows("i"),
        prior=0.05,
        m=20,
    )


def run_duckdb(raw: Path, workdir: Path) -> tuple[float, int]:
    import duckdb

    out = workdir / "duckdb_training_samples.parquet"
    con = duckdb.connect(str(workdir / "bench.duckdb"))
    start = time.perf_counter()
    con.execute(duckdb_sql(raw, out))
    seconds = time.perf_counter() - start
    rows = con.execute(f"select count(*) from read_parquet('{out}')").fetchone()[0]
    con.close()
    return seconds, rows


def run_dbt(
    raw: Path, warehouse: Path, workdir: Path, target: Path | None = None
) -> tuple[float, dict, float]:
    """One `dbt build` in a fresh process: its seconds, per-node seconds from run_results.json, and
    the mean 1-minute load average while it ran (the machine may be shared: compare runs made under
    the same load).

    `target`: dbt's target directory (default: a new one in `workdir`). Daily runs share one, as
    the runs of a project in production do: each finds the previous run's parsed project there
    (partial parsing) instead of parsing every file again."""
    env = {"CTR_RAW_PATH": str(raw), "CTR_WAREHOUSE_DIR": str(warehouse), "CTR_DBT_TARGET": "local",
           # as `make features` runs it: the class-data archive mapped when there is one; a
           # CTR_JAVA_OPTIONS in the environment, even empty, is taken as it is
           "CTR_JAVA_OPTIONS": os.environ.get("CTR_JAVA_OPTIONS", java_options())}
    target = target or workdir / "target"
    cmd = [Path(sys.executable).with_name("dbt"), "build", "--profiles-dir", ROOT,
           "--target-path", target, "--log-path", workdir / "logs",
           "--exclude-resource-type", "unit_test"]
    log = workdir / "dbt-build.out"
    m = run_measured(cmd, log, env=env, cwd=PROJECT)
    if m.rc != 0:
        sys.exit(f"dbt build failed on {raw}:\n{log.read_text()[-4000:]}")
    results = json.loads((target / "run_results.json").read_text())
    per_node = {r["unique_id"]: r["execution_time"] for r in results["results"]}
    return m.wall_s, per_node, m.load


def generate(n: int, days: int, seed: int, users: int, items: int, out: Path) -> None:
    print(f"[{n:,} rows] generating into {out}", file=sys.stderr)
    subprocess.run(
        [
            sys.executable, "-m", "synthetic", "generate",
            "--rows", str(n), "--days", str(days), "--seed", str(seed),
            "--users", str(users), "--items", str(items),
            "--out", str(out), "--quiet",
        ],
        cwd=ROOT,
        check=True,
    )


def _link_days(split: Path, days: list[str], raw: Path) -> None:
    """The day folders of `days` into raw as hard links: no copy, the same modification times."""
    raw.mkdir(parents=True, exist_ok=True)
    for day in days:
        if not (raw / f"date={day}").exists():
            shutil.copytree(split / f"date={day}", raw / f"date={day}", copy_function=os.link)


def _slowest(per_node: dict, k: int = 5) -> str:
    top = sorted(per_node.items(), key=lambda kv: -kv[1])[:k]
    return ", ".join(f"{name.split('.')[2]} {t:.1f}" for name, t in top)


def bench_size(args, n: int, workdir: Path) -> dict:
    """Generate (once per workdir), then the DuckDB reference, the full build, the build of the days
    before the last (not timed), the new day and the run with nothing new."""
    generated = workdir / "generated"
    if not (generated / "manifest.json").exists():
        generate(n, args.days, args.seed, args.users, args.items, generated)
    split = workdir / "split"
    days = sorted(p.name[len("date="):] for p in split.glob("date=*")) if split.exists() else []
    if not days:
        days = split_by_day(generated, split)
    row: dict = {"rows": n, "days": len(days)}
    if args.only in (None, "full"):
        full_build(args, n, workdir, split, days, row)
    if args.only == "noop":
        nothing_new(n, workdir, row)
    elif args.only != "full":
        daily_runs(n, workdir, split, days, row, args.day_runs)
    return row


def full_build(args, n: int, workdir: Path, split: Path, days: list[str], row: dict) -> None:
    if not args.no_duckdb:
        print(f"[{n:,} rows] duckdb reference", file=sys.stderr)
        row["duckdb_s"], _ = run_duckdb(workdir / "generated", workdir)
    for name in ("raw-full", "wh-full"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    print(f"[{n:,} rows] full build of {len(days)} days", file=sys.stderr)
    _link_days(split, days, workdir / "raw-full")
    row["full_s"], per_node, row["full_load"] = run_dbt(
        workdir / "raw-full", workdir / "wh-full", workdir / "run-full"
    )
    row["full_slowest"] = _slowest(per_node)
    print(f"[{n:,} rows] full build {row['full_s']:.1f} s (load {row['full_load']:.1f})", file=sys.stderr)


def daily_runs(n: int, workdir: Path, split: Path, days: list[str], row: dict, day_runs: int = 1) -> None:
    """The days before the last built (not timed), then the last day added `day_runs` times, each time
    to a copy of that build (the median run is reported), then a run with nothing new."""
    for name in ("raw-daily", "wh-daily", "target-daily", "wh-daily.before", "target-daily.before"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    print(f"[{n:,} rows] build of the first {len(days) - 1} days (not timed)", file=sys.stderr)
    raw = workdir / "raw-daily"
    _link_days(split, days[:-1], raw)
    run_dbt(raw, workdir / "wh-daily", workdir / "run-first", daily_target(workdir))

    before = [workdir / "wh-daily", daily_target(workdir)]
    if day_runs > 1:  # kept as built, so that every timed run adds the same day to the same state
        for path in before:
            shutil.copytree(path, path.with_name(path.name + ".before"), symlinks=True)
    _link_days(split, days[-1:], raw)
    runs = []
    for k in range(day_runs):
        if k:  # the same path as before: the metastore inside holds the tables' absolute paths
            for path in before:
                shutil.rmtree(path)
                shutil.copytree(path.with_name(path.name + ".before"), path, symlinks=True)
        print(f"[{n:,} rows] new day {days[-1]} ({k + 1} of {day_runs})", file=sys.stderr)
        runs.append(run_dbt(raw, workdir / "wh-daily", workdir / "run-day", daily_target(workdir)))
        print(f"[{n:,} rows] new day {runs[-1][0]:.1f} s (load {runs[-1][2]:.1f})", file=sys.stderr)
    for path in before:
        shutil.rmtree(path.with_name(path.name + ".before"), ignore_errors=True)
    runs_by_time = sorted(runs, key=lambda r: r[0])
    row["day_s"], per_node, row["day_load"] = runs_by_time[(len(runs) - 1) // 2]  # the median run
    row["day_runs"] = [(s, load) for s, _, load in runs]
    row["day_slowest"] = _slowest(per_node)
    nothing_new(n, workdir, row)


def nothing_new(n: int, workdir: Path, row: dict) -> None:
    """The daily build run again with no new, changed or removed file."""
    raw, warehouse = workdir / "raw-daily", workdir / "wh-daily"
    if not (warehouse / "metastore_db").is_dir():
        sys.exit(f"no daily warehouse under {workdir}: run --only daily first")
    print(f"[{n:,} rows] nothing new", file=sys.stderr)
    row["noop_s"], per_node, row["noop_load"] = run_dbt(
        raw, warehouse, workdir / "run-noop", daily_target(workdir)
    )
    row["noop_slowest"] = _slowest(per_node)


def daily_target(workdir: Path) -> Path:
    """dbt's target directory of the daily runs, shared by them (see run_dbt)."""
    return workdir / "target-daily"


STEPS = {"full": "full build", "day": "new day", "noop": "nothing new"}


def report(table: list[dict]) -> None:
    columns = [  # (header, width, value of a row or None when not measured)
        ("rows", 11, lambda r: f"{r['rows']:,}"),
        ("full build s", 13, lambda r: f"{r['full_s']:.1f}"),
        ("load", 5, lambda r: f"{r['full_load']:.1f}"),
        ("duckdb s", 9, lambda r: f"{r['duckdb_s']:.1f}"),
        ("dbt/duckdb", 11, lambda r: f"{r['full_s'] / r['duckdb_s']:.0f}x"),
        ("new day s", 10, lambda r: f"{r['day_s']:.1f}"),
        ("load", 5, lambda r: f"{r['day_load']:.1f}"),
        ("day/full", 9, lambda r: f"{r['day_s'] / r['full_s']:.2f}"),
        ("nothing new s", 14, lambda r: f"{r['noop_s']:.1f}"),
        ("load", 5, lambda r: f"{r['noop_load']:.1f}"),
    ]

    def cell(r, value):
        try:
            return value(r)
        except KeyError:
            return "-"

    print(" ".join(f"{h:>{w}}" for h, w, _ in columns))
    for r in table:
        print(" ".join(f"{cell(r, v):>{w}}" for _, w, v in columns))
    for r in table:
        if len(r.get("day_runs", [])) > 1:
            runs = ", ".join(f"{s:.1f} (load {load:.1f})" for s, load in r["day_runs"])
            print(f"{r['rows']:,} rows, new day in each run, s: {runs}; the table gives the median")
    for r in table:
        print(f"{r['rows']:,} rows, slowest nodes (s)")
        for step, name in STEPS.items():
            if f"{step}_slowest" in r:
                print(f"  {name:>11}: {r[step + '_slowest']}")
    print(
        "(each dbt figure is one `dbt build` in a fresh process: JVM start, parse, models, tests; "
        "load: the mean 1-minute load average while it ran; dbt/duckdb: full build over the "
        "DuckDB reference; new day and nothing new beside the same DuckDB reference, which has no "
        "incremental run)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[1_000_000], help="raw records per size"
    )
    parser.add_argument("--days", type=int, default=14, help="days of logs")
    parser.add_argument("--users", type=int, default=70_000, help="users (AntM2C: about 70k)")
    parser.add_argument("--items", type=int, default=80_000, help="items (AntM2C: about 80k)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where inputs and warehouses go; generated logs found there are reused "
        "(default: a new temporary directory)",
    )
    parser.add_argument("--no-duckdb", action="store_true", help="skip the DuckDB reference")
    parser.add_argument(
        "--only",
        choices=("full", "daily", "noop"),
        default=None,
        help="only the full build (and DuckDB), only the daily runs (new day, nothing new), or "
        "only the nothing-new run again on the daily warehouse an earlier --only daily left",
    )
    parser.add_argument(
        "--day-runs",
        type=int,
        default=1,
        help="time the new day this many times, each on a copy of the same build of the days "
        "before it, and report the median run (of an even number, the faster middle one); the copy takes "
        "as much disk as that build",
    )
    args = parser.parse_args(argv)
    if args.day_runs < 1:
        parser.error("--day-runs must be 1 or more")
    if args.day_runs > 1 and args.only in ("full", "noop"):
        parser.error(f"--day-runs times the new day, which --only {args.only} does not run")
    if any(n < 1 for n in args.rows) or args.users < 1 or args.items < 1:
        parser.error("--rows, --users and --items must be positive")
    if args.days < 2:
        parser.error("--days must be 2 or more (the last day is the new day)")
    # absolute: dbt runs from the project directory, where a relative path would land elsewhere
    base = (args.workdir or Path(tempfile.mkdtemp(prefix="m2ctr-bench-"))).resolve()
    table = [bench_size(args, n, base / f"rows-{n}") for n in args.rows]
    report(table)
    print(f"inputs and warehouses kept under {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
