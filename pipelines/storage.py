"""Where a dataset group's outputs live, keyed by as_of, and how they are written atomically.

Layout under a group's storage root::

    snapshots/as_of=20240501T000000/   one import: <DATASET>.parquet, quarantine/, manifest.json
    validation/as_of=20240501T000000/  Great Expectations Data Docs and the summary JSON

A snapshot is built in a hidden sibling folder and moved into place with rename, so readers
see the old snapshot or the new one, never half of one; a failed run leaves the old in place.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

KEY_FORMAT = "%Y%m%dT%H%M%S"


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
    """Yield a temporary folder; on success it replaces ``target`` whole, on error it vanishes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
