"""python -m synthetic generate: AntM2C-shaped impression logs with known truth."""

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from synthetic.generate import N_DEEP, Config, generate
from synthetic.lang import LANGUAGES


def _int_at_least(low: int, what: str):
    """An argparse type: an integer >= low, else an error that says so."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}")


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 0.5], got {text!r}")
    if not 0.0 <= value <= 0.5:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 0.5], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m synthetic",
        description="Synthetic AntM2C-shaped click logs with a known click probability.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gen = commands.add_parser(
        "generate",
        help="write CSV parts, truth.parquet, bad.parquet and manifest.json",
        description=(
            "Write DIR/part-NNNNN.csv (AntM2C columns, both time formats, about --bad-rate "
            "malformed records), DIR/truth.parquet (true click probability of every clean "
            "record), DIR/bad.parquet (where each malformed record is and its reject reason) "
            "and DIR/manifest.json (counts). Files of an earlier run in DIR with these names "
            "are replaced. The same arguments give byte-identical files."
        ),
    )
    gen.add_argument("--rows", type=_positive_int, default=200_000, metavar="N",
                     help="raw records to write, malformed ones included (default: 200000)")
    gen.add_argument("--days", type=_positive_int, default=14, metavar="D",
                     help="consecutive days of logs (default: 14)")
    gen.add_argument("--seed", type=_non_negative_int, default=0, metavar="S",
                     help="random seed (default: 0)")
    gen.add_argument("--out", type=Path, default=Path("data/raw"), metavar="DIR",
                     help="output directory, created if missing (default: data/raw)")
    gen.add_argument("--start", type=_date, default=dt.date(2024, 3, 1), metavar="YYYY-MM-DD",
                     help="first day (default: 2024-03-01)")
    gen.add_argument("--no-header", dest="header", action="store_false",
                     help="omit the header line, as in the AntM2C public release "
                          "(default: write it)")
    gen.add_argument("--deep-features", type=_non_negative_int, default=N_DEEP, metavar="K",
                     help=f"write only deep_features_0..K-1, K in 0..{N_DEEP}; K < {N_DEEP} "
                          f"needs the header (default: {N_DEEP})")
    gen.add_argument("--parts", type=_positive_int, default=4, metavar="P",
                     help="number of CSV part files (default: 4)")
    gen.add_argument("--bad-rate", type=_rate, default=0.02, metavar="F",
                     help="share of malformed records, in [0, 0.5], spread evenly over the 7 "
                          "reject reasons (default: 0.02)")
    gen.add_argument("--users", type=_positive_int, default=None, metavar="U",
                     help="size of the user population (default: rows / 10)")
    gen.add_argument("--items", type=_positive_int, default=None, metavar="I",
                     help="size of the item population (default: rows / 40)")
    gen.add_argument("--lang", choices=sorted(LANGUAGES), default="en",
                     help="language of titles and entity names: en, or zh (Chinese without spaces "
                          "between words, entity lists split by ',' or '，'); the users, items, "
                          "clicks and truth are the same in every language (default: en)")
    gen.add_argument("--quiet", action="store_true",
                     help="no progress bar and no summary line on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.deep_features > N_DEEP:
        parser.error(f"--deep-features must be between 0 and {N_DEEP}, got {args.deep_features}")
    if args.deep_features < N_DEEP and not args.header:
        parser.error(f"--deep-features {args.deep_features} needs the header: without one a "
                     f"file must carry all {N_DEEP} deep features")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} exists and is not a directory")
    cfg = Config(rows=args.rows, days=args.days, seed=args.seed, start=args.start,
                 header=args.header, deep_features=args.deep_features, parts=args.parts,
                 bad_rate=args.bad_rate, users=args.users, items=args.items,
                 lang=args.lang)
    started = time.perf_counter()
    try:
        manifest = generate(cfg, args.out, progress=not args.quiet)
    except ValueError as e:
        parser.error(str(e))
    seconds = time.perf_counter() - started
    if not args.quiet:
        cold = manifest["cold_start"]
        print(f"wrote {manifest['records']} records ({manifest['bad']['total']} malformed) in "
              f"{cfg.parts} parts to {args.out} in {seconds:.1f} s "
              f"({manifest['records'] / seconds:,.0f} rows/s); clean ctr {manifest['ctr']}; "
              f"last day new users {cold['new_user_rate']}, new items {cold['new_item_rate']}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
