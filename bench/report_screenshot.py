"""Open a report.html in real headless Chromium and save a screenshot of the page as it renders.

    python bench/report_screenshot.py runs/demo-fusion                  # writes the report if missing
    python bench/report_screenshot.py runs/ladder/report.html --out shot.png --height 3000

Needs Debian's `chromium` package (`apt-get install -y chromium`) or `--chromium PATH`. Prints the
browser's version, how long it took, and the screenshot's size and share of non-white pixels per
quarter of its height (a blank or broken page shows as all zeros). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


def report_path(target: Path) -> Path:
    """The report.html named by `target`, writing it first when `target` is a run or ladder directory."""
    if target.is_dir():
        page = target / "report.html"
        if not page.is_file():
            from trainer.report import write_report

            page = write_report(target)
        return page
    if not target.is_file():
        sys.exit(f"error: {target}: no such file or directory")
    return target


def screenshot(chromium: str, page: Path, out: Path, width: int, height: int, timeout: int) -> float:
    """Seconds Chromium took to load `page` and write `out`."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out.resolve()}",
               f"--window-size={width},{height}", page.resolve().as_uri()]
        start = time.perf_counter()
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
        took = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        sys.exit(f"error: chromium exited {proc.returncode} without a screenshot: {' | '.join(tail)}")
    return took


def ink(png: Path, bands: int = 4) -> list[float]:
    """Share of non-white pixels in each of `bands` horizontal bands of the image."""
    a = np.asarray(Image.open(png).convert("L"))
    return [float((band < 245).mean()) for band in np.array_split(a, bands, axis=0)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("target", type=Path, help="report.html, or a run / ladder directory")
    p.add_argument("--out", type=Path, help="screenshot PNG (default: report_screenshot.png beside the page)")
    p.add_argument("--width", type=int, default=1280, help="window width in px (default %(default)s)")
    p.add_argument("--height", type=int, default=4000, help="window height in px (default %(default)s)")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium",
                   help="browser binary (default: %(default)s)")
    p.add_argument("--timeout", type=int, default=120, help="seconds before giving up (default %(default)s)")
    args = p.parse_args()
    if not Path(args.chromium).is_file():
        sys.exit(f"error: no browser at {args.chromium}; apt-get install -y chromium, or pass --chromium")
    page = report_path(args.target)
    out = args.out or page.parent / "report_screenshot.png"
    version = subprocess.run([args.chromium, "--version"], check=True, capture_output=True,
                             text=True).stdout.strip()
    took = screenshot(args.chromium, page, out, args.width, args.height, args.timeout)
    w, h = Image.open(out).size
    shares = "  ".join(f"{s:.1%}" for s in ink(out))
    print(f"browser     {version}")
    print(f"page        {page} ({page.stat().st_size / 1024:,.0f} KiB)")
    print(f"screenshot  {out} ({w}x{h} px, {out.stat().st_size / 1024:,.0f} KiB) in {took:.1f} s")
    print(f"non-white   {shares}   (per quarter of the height, top to bottom)")


if __name__ == "__main__":
    main()
