"""Warehouse benchmark: `dbt build` (local target) time and rows/s on generated logs.

For each size, generates AntM2C-shaped logs (`python -m synthetic generate`) and runs the real
`dbt build` in a fresh process (JVM start-up, every model and every data test included).

Default mode: one full build, then the same point-in-time feature SQL in DuckDB on the same CSV
as a single-machine reference. The DuckDB reference parses the CSV, drops malformed records, and
writes the user / item / pair features and the joined training table to Parquet; it has no
quarantine table and no data tests.

--incremental: the logs split into one `date=YYYY-MM-DD/` folder per day; a full build of all
days, against an incremental run that adds the last day to a build of the days before it (and a
run with nothing new, after it), with the slowest nodes of the last-day run.

Every timed build is printed with `load`, the mean 1-minute load average while it ran: on a
shared machine the figures move with it, so compare builds made under the same load.

    .venv/bin/python bench/warehouse.py --rows 100000 1000000
    .venv/bin/python bench/warehouse.py --incremental --rows 100000 1000000
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from m2ctr.schema import RAW_COLUMNS
from synthetic.generate import BASE_COLUMNS, DEEP_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
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


def _record_day(fields: list[str]) -> str | None:
    """The day of a record's log_time in either raw format, or None (unparseable, too short)."""
    if len(fields) <= RAW_COLUMNS.index("log_time"):
        return None
    text = fields[RAW_COLUMNS.index("log_time")].strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M"):
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            pass
    return None


def _records(f):
    """(fields, exact text) of each CSV record of an open file, multi-line records included."""
    lines: list[str] = []

    def feed():
        for line in f:
            lines.append(line)
            yield line

    for fields in csv.reader(feed()):
        text, lines[:] = "".join(lines), []
        yield fields, text


def split_by_day(src: Path, dest: Path) -> list[str]:
    """Copy the CSV parts of src into dest/date=YYYY-MM-DD/<part name>, one folder per day.

    A daily drop in the layout the warehouse reads: each record's bytes are copied unchanged, a
    part's header line heads each of its day files, and a record whose day cannot be read
    (malformed) goes with the next record that has one (the one before, at the end of a part), as
    in a log written in time order. Returns the days, sorted.
    """
    days: set[str] = set()
    for part in sorted(src.glob("*.csv")):
        header, pending, by_day = "", [], {}
        with open(part, newline="", encoding="utf-8") as f:
            for fields, text in _records(f):
                if not (header or by_day or pending) and fields[:2] == ["user_id", "item_id"]:
                    header = text
                    continue
                pending.append(text)
                day = _record_day(fields)
                if day is not None:
                    by_day.setdefault(day, []).extend(pending)
                    pending = []
        if pending and by_day:
            by_day[max(by_day)].extend(pending)
        for day, records in by_day.items():
            folder = dest / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / part.name).write_text(header + "".join(records), encoding="utf-8", newline="")
        days.update(by_day)
    return sorted(days)


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


def run_dbt(raw: Path, warehouse: Path, workdir: Path) -> tuple[float, dict, float]:
    """One `dbt build` in a fresh process: its seconds, per-node seconds from run_results.json, and
    the mean 1-minute load average while it ran (the machine may be shared: compare runs made under
    the same load)."""
    env = dict(
        os.environ, CTR_RAW_PATH=str(raw), CTR_WAREHOUSE_DIR=str(warehouse), CTR_DBT_TARGET="local"
    )
    dbt = Path(sys.executable).with_name("dbt")
    log = workdir / "dbt-build.out"
    workdir.mkdir(parents=True, exist_ok=True)
    loads = []
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                str(dbt),
                "build",
                "--profiles-dir",
                str(ROOT),
                "--target-path",
                str(workdir / "target"),
                "--log-path",
                str(workdir / "logs"),
            ],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        while True:
            loads.append(os.getloadavg()[0])
            try:
                proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                pass
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"dbt build failed on {raw}:\n{log.read_text()[-4000:]}")
    results = json.loads((workdir / "target" / "run_results.json").read_text())
    per_node = {r["unique_id"]: r["execution_time"] for r in results["results"]}
    return seconds, per_node, sum(loads) / len(loads)


def generate(n: int, days: int, seed: int, out: Path) -> None:
    print(f"[{n:,} rows] generating into {out}", file=sys.stderr)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "synthetic",
            "generate",
            "--rows",
            str(n),
            "--days",
            str(days),
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--quiet",
        ],
        cwd=ROOT,
        check=True,
    )


def full_builds(args, base: Path) -> None:
    table = []
    for n in args.rows:
        workdir = base / f"rows-{n}"
        raw = workdir / "raw"
        generate(n, args.days, args.seed, raw)
        print(f"[{n:,} rows] dbt build", file=sys.stderr)
        dbt_s, per_node, load = run_dbt(raw, workdir / "warehouse", workdir)
        models_s = sum(t for k, t in per_node.items() if k.startswith("model."))
        tests_s = sum(t for k, t in per_node.items() if k.startswith("test."))
        row = {
            "rows": n,
            "dbt_build_s": dbt_s,
            "models_s": models_s,
            "tests_s": tests_s,
            "rows_per_s": n / dbt_s,
            "load": load,
        }
        if not args.no_duckdb:
            print(f"[{n:,} rows] duckdb reference", file=sys.stderr)
            duck_s, duck_rows = run_duckdb(raw, workdir)
            row.update(duckdb_s=duck_s, duckdb_rows=duck_rows, duckdb_rows_per_s=n / duck_s)
        table.append(row)

    header = (
        f"{'rows':>10} {'dbt build s':>12} {'load':>5} {'models s':>9} {'tests s':>8} {'rows/s':>9}"
    )
    if not args.no_duckdb:
        header += f" {'duckdb s':>9} {'duckdb rows/s':>14}"
    print(header)
    for r in table:
        line = (
            f"{r['rows']:>10,} {r['dbt_build_s']:>12.1f} {r['load']:>5.1f} {r['models_s']:>9.1f} "
            f"{r['tests_s']:>8.1f} {r['rows_per_s']:>9,.0f}"
        )
        if not args.no_duckdb:
            line += f" {r['duckdb_s']:>9.1f} {r['duckdb_rows_per_s']:>14,.0f}"
        print(line)
    if len(table) > 1:
        first, last = table[0], table[-1]
        print(
            f"scaling: {last['rows'] / first['rows']:.0f}x rows -> "
            f"{last['dbt_build_s'] / first['dbt_build_s']:.1f}x dbt build time"
        )
    print(
        "(models s / tests s: summed per-node times from run_results.json; with several dbt "
        "threads they overlap, so they can exceed the wall time)"
    )


def _link_days(split: Path, days: list[str], raw: Path) -> None:
    """The day folders of `days` into raw as hard links: no copy, the same modification times."""
    raw.mkdir(parents=True, exist_ok=True)
    for day in days:
        shutil.copytree(split / f"date={day}", raw / f"date={day}", copy_function=os.link)


def incremental_builds(args, base: Path) -> None:
    table = []
    for n in args.rows:
        workdir = base / f"rows-{n}"
        generate(n, args.days, args.seed, workdir / "generated")
        days = split_by_day(workdir / "generated", workdir / "split")
        print(f"[{n:,} rows] full build of {len(days)} days", file=sys.stderr)
        _link_days(workdir / "split", days, workdir / "raw-full")
        full_s, _, full_load = run_dbt(
            workdir / "raw-full", workdir / "wh-full", workdir / "run-full"
        )
        print(f"[{n:,} rows] build of the first {len(days) - 1} days (not timed)", file=sys.stderr)
        raw = workdir / "raw-incremental"
        _link_days(workdir / "split", days[:-1], raw)
        run_dbt(raw, workdir / "wh-incremental", workdir / "run-first")
        print(f"[{n:,} rows] incremental run for {days[-1]}", file=sys.stderr)
        _link_days(workdir / "split", days[-1:], raw)
        day_s, per_node, day_load = run_dbt(raw, workdir / "wh-incremental", workdir / "run-day")
        print(f"[{n:,} rows] run with nothing new", file=sys.stderr)
        noop_s, _, noop_load = run_dbt(raw, workdir / "wh-incremental", workdir / "run-noop")
        slowest = sorted(per_node.items(), key=lambda kv: -kv[1])[:5]
        table.append((n, full_s, full_load, day_s, day_load, noop_s, noop_load, slowest))

    print(
        f"{'rows':>10} {'full build s':>13} {'load':>5} {'last day s':>11} {'load':>5} "
        f"{'day/full':>9} {'nothing new s':>14} {'load':>5}"
    )
    for n, full_s, full_load, day_s, day_load, noop_s, noop_load, _ in table:
        print(
            f"{n:>10,} {full_s:>13.1f} {full_load:>5.1f} {day_s:>11.1f} {day_load:>5.1f} "
            f"{day_s / full_s:>9.2f} {noop_s:>14.1f} {noop_load:>5.1f}"
        )
    for n, *_, slowest in table:
        names = ", ".join(f"{k.split('.')[-1]} {t:.1f}" for k, t in slowest)
        print(f"{n:,} rows, slowest nodes of the last-day run (s): {names}")
    print(
        "(each figure is one `dbt build` in a fresh process: JVM start, parse, models, tests; "
        "load: the mean 1-minute load average while it ran)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="raw records per run"
    )
    parser.add_argument("--days", type=int, default=14, help="days of logs")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where inputs and warehouses go (default: a new temporary directory)",
    )
    parser.add_argument("--no-duckdb", action="store_true", help="skip the DuckDB reference")
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="time a full build against the incremental run that adds the last day",
    )
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.rows):
        parser.error("--rows must be positive")
    if args.incremental and args.days < 2:
        parser.error("--incremental needs --days 2 or more")
    base = args.workdir or Path(tempfile.mkdtemp(prefix="m2ctr-bench-"))
    if args.incremental:
        incremental_builds(args, base)
    else:
        full_builds(args, base)
    print(f"inputs and warehouses kept under {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
