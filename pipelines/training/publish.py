"""Publishing: versioned outputs with a ``latest`` pointer that moves in one atomic step.

Each run publishes into ``<storage>/published/<kind>/as_of=<key>/`` (built aside and renamed
into place; a version published again is swapped with its replacement in one step, so it is
never missing) and then rewrites ``<storage>/published/<kind>/latest.json`` through a temporary
file and a rename. Readers (the serving API, a BI tool) follow the pointer, so they see the
previous version or the new one, never a half-written one; a run that fails before the
pointer moves leaves the last good version published.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipelines import storage


def published_dir(root: str, kind: str) -> Path:
    return Path(root) / "published" / kind


def publish(
    root: str, kind: str, as_of: pd.Timestamp, write: Callable[[Path], dict | None], move_latest: bool = True
) -> dict:
    """Run ``write(folder)`` into a fresh folder for ``as_of``, then point ``latest`` at it.

    ``write`` fills the folder and may return details for the pointer (row counts, checksums).
    With ``move_latest`` false the version is written and ``latest`` stays where it was (a
    backfill of an older date, or a caller that moves it later with ``point_latest``).
    """
    base = published_dir(root, kind)
    target = base / storage.as_of_key(as_of)
    with storage.atomic_dir(target) as tmp:
        details = write(tmp) or {}
    pointer = {
        "kind": kind,
        "as_of": as_of.isoformat(),
        "path": str(target),
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **details,
    }
    if move_latest:
        point_latest(root, kind, pointer)
    return pointer


def point_latest(root: str, kind: str, pointer: dict) -> bool:
    """Switch ``latest.json`` to ``pointer`` unless it already names a newer as_of; say whether it moved."""
    current = latest(root, kind)
    if current is not None and pd.Timestamp(current["as_of"]) > pd.Timestamp(pointer["as_of"]):
        return False
    storage.write_json(published_dir(root, kind) / "latest.json", pointer)
    return True


def latest(root: str, kind: str) -> dict | None:
    """The pointer to the latest published version, or None before the first."""
    path = published_dir(root, kind) / "latest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def earlier_version(root: str, kind: str, as_of: pd.Timestamp) -> Path | None:
    """The published version folder of the newest as_of before ``as_of`` (None when there is none)."""
    key = storage.as_of_key(as_of)
    folders = [p for p in published_dir(root, kind).glob("as_of=*") if p.is_dir() and p.name < key]
    return max(folders, key=lambda p: p.name) if folders else None


def prune(root: str, kind: str, keep: int = 5) -> list[Path]:
    """Remove all but the ``keep`` newest versions; never the one ``latest`` points to."""
    base = published_dir(root, kind)
    current = (latest(root, kind) or {}).get("path")
    versions = sorted(p for p in base.glob("as_of=*") if storage.parse_key(p.name) is not None)
    removed = [p for p in versions[:-keep] if str(p) != current] if keep else []
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed
