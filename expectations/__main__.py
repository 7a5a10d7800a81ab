"""`python -m expectations validate`: data-quality suites over the built warehouse."""

from __future__ import annotations

import argparse
import os
import sys

from expectations import SUITE_NAMES
from m2ctr.argtypes import fraction
from m2ctr.warehouse import schema_dir, schema_name, warehouse_dir

DESCRIPTION = """\
Run the Great Expectations suites against the built warehouse, print a
pass/fail table, write GX Data Docs HTML (<report-dir>/data_docs/index.html)
and a JSON summary (<report-dir>/summary.json).
Exit status: 0 all expectations pass, 1 any fails (or a table is missing),
2 bad arguments.

Environment (the same as the warehouse build):
  CTR_WAREHOUSE_DIR  local target: tables at <dir>/<schema>.db/<model> (default data/warehouse)
  CTR_LOCATION_ROOT  cluster target: tables at <root>/<schema>.db/<model>
                     (e.g. hdfs://namenode:9000/data/antm2c)
  CTR_SCHEMA         dbt schema (default m2ctr)
  CTR_RAW_PATH       raw logs: a directory, searched recursively (flat or in date=
                     folders), or one file (default data/raw)
  CTR_RAW_GLOB       which file names there are read (default: var raw_glob of
                     warehouse/dbt_project.yml, *.{csv,csv.gz,csv.bz2})
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m expectations")
    commands = parser.add_subparsers(dest="command", required=True)
    v = commands.add_parser(
        "validate",
        help="run the suites against the built warehouse",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument(
        "--target",
        choices=["local", "cluster"],
        default="local",
        help="local: read $CTR_WAREHOUSE_DIR; cluster: read $CTR_LOCATION_ROOT (default: local)",
    )
    v.add_argument(
        "--suite",
        action="append",
        choices=SUITE_NAMES,
        metavar="NAME",
        help=f"run only this suite; repeatable (default: all of {', '.join(SUITE_NAMES)})",
    )
    v.add_argument(
        "--report-dir",
        default="reports/data_quality",
        help="where Data Docs and summary.json go (default: reports/data_quality)",
    )
    v.add_argument(
        "--max-malformed-rate",
        type=fraction,
        default=0.05,
        help="largest share of malformed records: of each kind of defect in the raw suite, "
        "and of all rejected records together in quarantine_impressions (default: 0.05)",
    )
    v.add_argument(
        "--label-rate-min",
        type=fraction,
        default=0.001,
        help="training_samples: lowest sane click rate of a scene (default: 0.001)",
    )
    v.add_argument(
        "--label-rate-max",
        type=fraction,
        default=0.5,
        help="training_samples: highest sane click rate of a scene (default: 0.5)",
    )
    v.add_argument(
        "--min-text-rate",
        type=fraction,
        default=0.5,
        help="training_samples: lowest share of rows with a non-empty item_title and "
        "item_entity_names (default: 0.5)",
    )
    v.add_argument("--all", action="store_true", help="list passing expectations too")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.label_rate_min > args.label_rate_max:
        parser.error("--label-rate-min is above --label-rate-max")
    location_root = os.environ.get("CTR_LOCATION_ROOT")
    if args.target == "cluster" and not location_root:
        parser.error(
            "--target cluster needs CTR_LOCATION_ROOT (e.g. hdfs://namenode:9000/data/antm2c)"
        )

    # Great Expectations and Spark load slowly: only once the arguments are known to be good.
    from expectations.runner import format_table, validate, write_result_beside, write_summary
    from expectations.settings import Settings
    from m2ctr.schema import RAW_GLOB

    chosen = args.suite or SUITE_NAMES
    settings = Settings(
        target=args.target,
        warehouse_dir=str(warehouse_dir()),
        schema=schema_name(),
        location_root=location_root,
        raw_path=os.environ.get("CTR_RAW_PATH", "data/raw"),
        raw_glob=os.environ.get("CTR_RAW_GLOB") or RAW_GLOB,
        report_dir=args.report_dir,
        suites=[s for s in SUITE_NAMES if s in chosen],
        max_malformed_rate=args.max_malformed_rate,
        label_rate_bounds=(args.label_rate_min, args.label_rate_max),
        min_text_rate=args.min_text_rate,
    )
    summary = validate(settings)
    summary_path = write_summary(summary, settings.report_dir)
    if args.target == "local":  # beside the tables, so a run records the result of what it read
        write_result_beside(summary, summary_path, schema_dir(settings.warehouse_dir, settings.schema))
    print(format_table(summary["rows"], show_all=args.all))
    print(f"summary:   {summary_path}")
    print(f"data docs: {summary['data_docs']}")
    if not summary["success"]:
        failed = [name for name, s in summary["suites"].items() if not s["success"]]
        print(f"data quality FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("data quality passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
