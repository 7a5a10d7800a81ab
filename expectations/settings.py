"""What one validation run is asked to do: where the tables are, which suites, which thresholds.

Its own module so that the runner and the suite builders both import it, and neither the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from expectations import SUITE_NAMES
from m2ctr.schema import RAW_GLOB


@dataclass
class Settings:
    target: str = "local"
    warehouse_dir: str = "data/warehouse"
    schema: str = "m2ctr"
    location_root: str | None = None
    raw_path: str = "data/raw"
    raw_glob: str = RAW_GLOB
    report_dir: str = "reports/data_quality"
    suites: list[str] = field(default_factory=lambda: list(SUITE_NAMES))
    max_malformed_rate: float = 0.05
    label_rate_bounds: tuple[float, float] = (0.001, 0.5)
    min_text_rate: float = 0.5
