"""Each side's text table as tensors on a device, copied once and again only when the table changed.

A table's `version` moves whenever its rows do (texts added, sentence vectors filled, rows
trimmed), so a batch never reads a stale copy, and a run that scores on one device copies each
table once per change rather than once per batch.
"""

from __future__ import annotations

from embeddings.tables import TextTable


class DeviceTables:
    def __init__(self, host_only: tuple[str, ...] = ()):
        self.host_only = host_only  # blocks that stay in numpy (bookkeeping no model reads)
        self.held: dict[tuple[str, str], tuple[int, dict]] = {}

    def tensors(self, side: str, table: TextTable, device) -> dict:
        """The table's blocks as tensors on `device`, by block name."""
        import torch

        key = (side, str(device))
        if self.held.get(key, (None,))[0] != table.version:
            self.held[key] = (table.version, {
                name: torch.from_numpy(table.block(name)).to(device) for name in table.blocks
                if name not in self.host_only})
        return self.held[key][1]
