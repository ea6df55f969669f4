"""Where a dataset group's outputs live, keyed by as_of, and how they are written atomically.

Layout under a group's storage root::

    snapshots/as_of=20240501T000000/   one import: <DATASET>.parquet, quarantine/, manifest.json
    validation/as_of=20240501T000000/  Great Expectations Data Docs and the summary JSON

A snapshot is built in a hidden sibling folder and moved into place with rename, so readers
see the old snapshot or the new one, never half of one; a failed run leaves the old in place.
A folder that already exists is swapped with its replacement in one step where the system
can (Linux ``renameat2(RENAME_EXCHANGE)``, macOS ``renamex_np(RENAME_SWAP)``), so there is no
moment at which it is missing.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import logging
import os
import shutil
import sys
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

KEY_FORMAT = "%Y%m%dT%H%M%S"
log = logging.getLogger(__name__)


def resolve_as_of(value=None) -> pd.Timestamp:
    """A run's data cut-off as a naive UTC timestamp, to the second (now when not given)."""
    if value is None or value == "":
        ts = pd.Timestamp(datetime.now(UTC))
    else:
        ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.floor("s")


def as_of_key(as_of: pd.Timestamp) -> str:
    return f"as_of={as_of.strftime(KEY_FORMAT)}"


def parse_key(name: str) -> pd.Timestamp | None:
    if not name.startswith("as_of="):
        return None
    try:
        return pd.Timestamp(datetime.strptime(name.removeprefix("as_of="), KEY_FORMAT))
    except ValueError:
        return None


def snapshot_dir(root: str, as_of: pd.Timestamp) -> Path:
    return Path(root) / "snapshots" / as_of_key(as_of)


def validation_dir(root: str, as_of: pd.Timestamp) -> Path:
    return Path(root) / "validation" / as_of_key(as_of)


def previous_snapshot(root: str, as_of: pd.Timestamp) -> Path | None:
    """The latest complete snapshot strictly before ``as_of`` (the base of an incremental import)."""
    base = Path(root) / "snapshots"
    if not base.is_dir():
        return None
    found = [
        (ts, p)
        for p in base.iterdir()
        if (ts := parse_key(p.name)) is not None and ts < as_of and (p / "manifest.json").is_file()
    ]
    return max(found)[1] if found else None


@contextmanager
def atomic_dir(target: Path):
    """Yield a temporary folder; on success it replaces ``target`` whole, on error it vanishes.

    An existing ``target`` is exchanged with the new folder in one system call where the file
    system allows it, so readers always find it; elsewhere it is renamed aside first (a moment
    without it) and a warning says so.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if not target.exists():
            os.rename(tmp, target)
        elif not exchange(tmp, target):
            log.warning("%s: this file system cannot swap folders in one step; replacing it by two renames", target)
            old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        # after an exchange ``tmp`` holds the previous version: removed below
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically; False where the system or file system cannot."""
    libc = _libc()
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        at_fdcwd, rename_exchange = -100, 2
        result = libc.renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange)
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        rename_swap = 2
        result = libc.renamex_np(os.fsencode(first), os.fsencode(second), rename_swap)
    else:
        return False
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"cannot swap {first} and {second}: {os.strerror(code)}")


@functools.cache
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def write_json(path: Path, payload: dict) -> None:
    """Write JSON through a temporary file and rename, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def write_parquet(frame_or_table, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = frame_or_table
    if isinstance(frame_or_table, pd.DataFrame):
        table = pa.Table.from_pandas(frame_or_table, preserve_index=False)
    pq.write_table(table, path, compression="zstd")
