"""Generator throughput: rows/s of `python -m synthetic generate` at a few sizes.

    python bench/generator.py [--rows 200000 1000000] [--days 14]
"""
import argparse
import resource
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args()
    print("| rows | wall s | rows/s (wall) | cpu s | rows/s (cpu) |")
    print("|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as out:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "synthetic", "generate", "--rows", str(rows),
                 "--days", str(args.days), "--seed", "7", "--out", out, "--quiet"],
                check=True,
            )
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"| {rows:,} | {wall:.1f} | {rows / wall:,.0f} | {cpu:.1f} | {rows / cpu:,.0f} |")


if __name__ == "__main__":
    main()
