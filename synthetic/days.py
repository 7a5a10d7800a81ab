"""Generated logs laid out as daily drops: one `date=YYYY-MM-DD/` folder per day.

The layout the README's daily workflow lands logs in, made from the generator's flat parts; used by
`bench/warehouse.py` and the incremental warehouse tests.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from m2ctr.schema import RAW_COLUMNS


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
