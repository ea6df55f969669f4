"""Stored events back into training: append a group's events to an interactions CSV.

``export_events(group)`` appends the events PutEvents stored for a dataset group, in
Personalize's INTERACTIONS layout (USER_ID, ITEM_ID, TIMESTAMP, EVENT_TYPE, EVENT_VALUE), to
``<storage>/events/INTERACTIONS_events.csv`` (or the path given) and remembers the last event
id exported in a sidecar file, so each call appends only what is new. The raw input files are
never touched: point an INCREMENTAL import, or the next FULL import's file list, at this CSV.
Rows appended before a crash and before the cursor moved are written again by the next call;
the import keeps exact duplicate events once.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from pipelines.serving.store import EVENT_COLUMNS, Store

HEADER = ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"]


def default_path(storage_root: str) -> Path:
    return Path(storage_root) / "events" / "INTERACTIONS_events.csv"


def export_events(store: Store, group: str, path: str | os.PathLike) -> dict:
    """Append ``group``'s events stored since the last export to ``path``; return counts and the cursor."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cursor_file = path.with_suffix(path.suffix + ".cursor.json")
    after = json.loads(cursor_file.read_text())["last_event_id"] if cursor_file.exists() else 0
    at = {name: k + 1 for k, name in enumerate(EVENT_COLUMNS)}  # +1: rows start with the id
    new_file = not path.exists() or path.stat().st_size == 0
    written, last = 0, after
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new_file:
            writer.writerow(HEADER)
        for row in store.event_rows(group, after_id=after):
            last = row[0]
            if not row[at["item_id"]]:
                continue  # an event without an item has nothing to train on
            value = row[at["event_value"]]
            writer.writerow([row[at["user_id"]], row[at["item_id"]], int(row[at["sent_at"]]), row[at["event_type"]],
                             "" if value is None else value])  # fmt: skip
            written += 1
        handle.flush()
        os.fsync(handle.fileno())
    tmp = cursor_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"last_event_id": int(last)}))
    os.replace(tmp, cursor_file)
    return {"path": str(path), "events": written, "last_event_id": int(last)}
