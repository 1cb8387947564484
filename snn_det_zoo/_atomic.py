"""Atomic file writes: a temporary file beside the destination, renamed onto it only when complete.

A reader never sees a half-written cache entry, result CSV or page, and a failure leaves the old file (or
none) in place, with the temporary file removed.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_path", "write_csv_atomic"]


@contextmanager
def atomic_path(dest: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``dest``, moved onto it with ``os.replace`` if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(dest: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """``open(dest, mode)`` for writing (text as UTF-8, CSV-safe newlines) that lands atomically."""
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    with atomic_path(dest) as tmp, open(tmp, mode, **text) as fh:
        yield fh


def write_csv_atomic(path: str | os.PathLike[str], columns: Iterable[str],
                     rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write a CSV with a header of ``columns`` and one line per row, atomically."""
    with atomic_open(path) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
