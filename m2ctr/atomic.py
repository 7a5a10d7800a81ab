"""Files and directories written whole: a reader sees the old one or the new one, never half.

Every package that writes something another process may read at the same time (a run, an export,
the vector cache, an exported encoder, a data-quality result) writes it through `atomic_path`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, directory: bool = False):
    """Yield a hidden sibling path of `final` (a fresh directory when `directory`); it is renamed
    to `final` only if the block completes, and removed if it raises or is interrupted."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.partial-{os.getpid()}"
    _remove(tmp)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    os.replace(tmp, final)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a whole text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
