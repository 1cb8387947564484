"""Atomic file writes: a temporary file beside the destination, renamed onto it only when complete.

A reader never sees a half-written cache entry, result CSV or page, and a failure leaves the old file (or
none) in place, with the temporary file removed.
"""

from __future__ import annotations

import csv
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import InvalidArgumentError

__all__ = ["atomic_open", "atomic_path", "check_writable_folder", "writable_folder", "write_csv_atomic",
           "write_files_atomic"]


def _create_temporary(dest: Path, suffix: str) -> Path:
    """A new empty file beside ``dest``, created with mode 0666 so the umask applies as it does to ``open``.

    ``tempfile.mkstemp`` would give 0600, and the rename would hand that mode to a cache or results file
    that other users and tools are meant to read.
    """
    for _ in range(100):
        tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {dest}")


@contextmanager
def atomic_path(dest: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``dest``, moved onto it with ``os.replace`` if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(dest, suffix)
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


def write_files_atomic(files: Mapping[str | os.PathLike[str], bytes]) -> list[Path]:
    """Write several files as one: every file goes to its temporary first, and only when all are written
    are they renamed into place. A failure before that point leaves every old file (or none) in place."""
    staged: list[tuple[Path, Path]] = []
    try:
        for dest, data in files.items():
            dest = Path(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = _create_temporary(dest, ".tmp")
            staged.append((tmp, dest))
            tmp.write_bytes(data)
        for tmp, dest in staged:
            os.replace(tmp, dest)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return [dest for _, dest in staged]


def writable_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder``, created if needed; an :class:`InvalidArgumentError` now if files cannot be written there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot create the folder {folder}: {exc}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidArgumentError(f"the folder {folder} is not writable")
    return folder


def check_writable_folder(folder: str | os.PathLike[str]) -> Path:
    """Refuse now, without creating anything, a folder that could not be made or written: ``folder`` or its
    nearest existing ancestor must be a writable directory (an :class:`InvalidArgumentError` otherwise)."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidArgumentError(f"cannot write into the folder {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidArgumentError(f"cannot write into the folder {folder}: {existing} is not writable")
    return folder

