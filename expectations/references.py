"""The values one suite takes from another table, computed once per run on the persisted tables.

stg_impressions is compared to the raw date range; quarantine_impressions and training_samples
to the staged row count, its days and its scenes. Each is one Spark aggregation, kept for the run.
"""

from __future__ import annotations

from expectations.sources import LOG_TS, RAW, Sources, TableMissing, first_line
from m2ctr.schema import SCENES

STAGED = "stg_impressions"


class References:
    """Reference values, memoized; each method raises `TableMissing` when its table is absent."""

    def __init__(self, sources: Sources):
        self.sources = sources
        self._values: dict[str, dict] = {}

    def known(self, table: str) -> bool:
        """Whether the values taken from `table` are computed (its frame is no longer needed)."""
        return table in self._values

    def columns(self, model: str) -> list[str]:
        return self.sources.frame(model).columns

    def row_count(self, model: str) -> int:
        return self.sources.frame(model).count()

    def raw_date_range(self) -> dict:
        """raw_min_date / raw_max_date: the days of every parseable raw log_time."""
        if RAW not in self._values:
            self._values[RAW] = self._raw_date_range()
        return self._values[RAW]

    def staged(self) -> dict:
        """stg_impressions_row_count, stg_impressions_dates (ISO days) and the known scenes in it."""
        if STAGED not in self._values:
            self._values[STAGED] = self._staged()
        return self._values[STAGED]

    def _raw_date_range(self) -> dict:
        from pyspark.errors import AnalysisException
        from pyspark.sql import functions as F

        lows, highs = [], []
        for frame in self.sources.raw_frames():
            day = F.to_date(F.col(LOG_TS))
            try:
                row = frame.select(F.min(day).alias("lo"), F.max(day).alias("hi")).first()
            except AnalysisException as exc:  # a layout without log_time
                raise TableMissing(f"raw input has no usable log_time: {first_line(exc)}") from exc
            if row["lo"] is not None:
                lows.append(row["lo"])
                highs.append(row["hi"])
        if not lows:
            raise TableMissing("raw input has no parseable log_time")
        return {"raw_min_date": min(lows).isoformat(), "raw_max_date": max(highs).isoformat()}

    def _staged(self) -> dict:
        from pyspark.errors import AnalysisException
        from pyspark.sql import functions as F

        frame = self.sources.frame(STAGED)
        try:
            row = frame.agg(
                F.count(F.lit(1)).alias("rows"),
                F.collect_set("date").alias("days"),
                F.collect_set("scene").alias("scenes"),
            ).first()
        except AnalysisException as exc:
            raise TableMissing(f"{STAGED} has no usable date/scene: {first_line(exc)}") from exc
        return {
            "stg_impressions_row_count": row["rows"],
            "stg_impressions_dates": sorted(d.isoformat() for d in row["days"]),
            "scenes": sorted(s for s in row["scenes"] if s in SCENES),
        }
