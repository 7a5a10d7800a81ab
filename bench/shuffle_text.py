"""Copy a training_samples table with its text made unrelated to clicks.

The user text columns are permuted together across all rows, and the item text columns with
another permutation, so every text still looks real but says nothing about the row's label. A
gated model should then fall back to its backbone (see README, "Results on the sample data"):

    python bench/shuffle_text.py data/warehouse/m2ctr.db/training_samples /tmp/shuffled --seed 0
    python -m trainer ladder --table /tmp/shuffled --rungs mmoe fusion
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyarrow import orc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m2ctr.schema import ITEM_TEXT_COLUMNS, USER_TEXT_COLUMNS


def shuffle_text(src: Path, dst: Path, seed: int) -> int:
    part = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
    table = ds.dataset(str(src), format="orc", partitioning=part).to_table()
    rng = np.random.default_rng(seed)
    for columns in (USER_TEXT_COLUMNS, ITEM_TEXT_COLUMNS):
        order = pa.array(rng.permutation(table.num_rows))
        for c in columns:
            table = table.set_column(table.schema.get_field_index(c), c, table.column(c).take(order))
    for day in sorted(set(table.column("date").to_pylist())):
        out = dst / f"date={day}"
        out.mkdir(parents=True, exist_ok=True)
        rows = table.filter(pc.equal(table.column("date"), day)).drop_columns(["date"])
        orc.write_table(rows, str(out / "part-0.orc"))
    return table.num_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path, help="training_samples directory")
    p.add_argument("dst", type=Path, help="directory to write (must not exist)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.dst.exists():
        p.error(f"{a.dst} already exists")
    print(f"{shuffle_text(a.src, a.dst, a.seed):,} rows written to {a.dst}")


if __name__ == "__main__":
    main()
