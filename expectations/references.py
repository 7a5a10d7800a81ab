"""The values one suite takes from another table, computed once per run.

stg_impressions is compared to the raw date range; quarantine_impressions and training_samples
to the staged row count, its days and its scenes. Each value is an aggregate over its table. When
that table's own suite runs first (the run order of SUITE_NAMES), the aggregates ride along with
its one-pass aggregation (`riders` / `take`) and cost no job of their own; otherwise (a suite
validated alone) they are one Spark aggregation over the table, kept for the run.
"""

from __future__ import annotations

from expectations.sources import LOG_TS, RAW, Sources, TableMissing, first_line
from m2ctr.schema import SCENES

STAGED = "stg_impressions"
STAGED_UNUSABLE = f"{STAGED} has no usable date/scene"


class References:
    """Reference values, memoized; each method raises `TableMissing` when its table is absent."""

    def __init__(self, sources: Sources):
        self.sources = sources
        self._values: dict[str, dict] = {}
        self._partial: dict[str, list] = {}  # table -> aggregate rows of the batches seen so far

    def known(self, table: str) -> bool:
        """Whether the values taken from `table` are computed (its frame is no longer needed)."""
        return table in self._values

    def columns(self, model: str) -> list[str]:
        return self.sources.frame(model).columns

    # -- riding along with a suite's own aggregation ------------------------------------------------

    def riders(self, table: str, columns: list[str]) -> dict:
        """Aggregates (name -> Spark SQL expression) of the values taken from `table`, for the one-pass
        aggregation of one of its batches (`columns`: the batch's columns); {} if none is wanted."""
        if table in self._values or table not in (RAW, STAGED):
            return {}
        wanted = (LOG_TS,) if table == RAW else ("date", "scene")
        if not set(wanted) <= set(columns):
            return {}  # the table's own path reports the missing column
        return _aggregates(table)

    def take(self, table: str, row: dict | None, last_batch: bool) -> None:
        """The riders' values of one batch of `table` (None: not computed, e.g. the batch fell
        back to Great Expectations' own path); after the last batch the values are known."""
        if table in self._values:
            return
        if row is None:
            self._partial[table] = [None]
        else:
            self._partial.setdefault(table, []).append(row)
        if last_batch:
            rows = self._partial.pop(table, [])
            if rows and None not in rows:
                self._values[table] = _combine(table, rows)

    # -- the values ---------------------------------------------------------------------------------

    def raw_date_range(self) -> dict:
        """raw_min_date / raw_max_date: the days of every parseable raw log_time."""
        if RAW not in self._values:
            self._values[RAW] = _combine(RAW, self._aggregate(RAW, self.sources.raw_frames()))
        return self._values[RAW]

    def staged(self) -> dict:
        """stg_impressions_row_count, stg_impressions_dates (ISO days) and the known scenes in it."""
        if STAGED not in self._values:
            rows = self._aggregate(STAGED, [self.sources.frame(STAGED)])
            self._values[STAGED] = _combine(STAGED, rows)
        return self._values[STAGED]

    def _aggregate(self, table: str, frames: list) -> list[dict]:
        from pyspark.errors import AnalysisException

        rows = []
        for frame in frames:
            try:
                row = frame.selectExpr(
                    *(f"{e} AS {n}" for n, e in _aggregates(table).items())
                ).first()
            except AnalysisException as exc:  # a layout without log_time, a table without date
                what = "raw input has no usable log_time" if table == RAW else STAGED_UNUSABLE
                raise TableMissing(f"{what}: {first_line(exc)}") from exc
            rows.append(row.asDict())
        return rows


def _aggregates(table: str) -> dict:
    """name -> aggregate (Spark SQL) of the values taken from `table`."""
    if table == RAW:
        return {"lo": f"min(to_date(`{LOG_TS}`))", "hi": f"max(to_date(`{LOG_TS}`))"}
    return {"rows": "count(1)", "days": "collect_set(`date`)", "scenes": "collect_set(`scene`)"}


def _combine(table: str, rows: list[dict]) -> dict:
    if table == RAW:
        lows = [r["lo"] for r in rows if r["lo"] is not None]
        if not lows:
            raise TableMissing("raw input has no parseable log_time")
        highs = [r["hi"] for r in rows if r["hi"] is not None]
        return {"raw_min_date": min(lows).isoformat(), "raw_max_date": max(highs).isoformat()}
    (row,) = rows
    return {
        "stg_impressions_row_count": row["rows"],
        "stg_impressions_dates": sorted(d.isoformat() for d in row["days"]),
        "scenes": sorted(s for s in row["scenes"] if s in SCENES),
    }
