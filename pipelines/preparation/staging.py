"""Validated datasets, handed from the validate step to the import step.

``validate_schema`` keeps each dataset it checked (typed, cut at as_of, with its quarantine)
next to its Data Docs. ``import_data`` reuses it only when the raw file's sha256 and the
group's settings are still the ones it was checked with; otherwise it checks the file again.
So the DAG validates each file once, and a file that changed between the tasks is caught.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from pipelines import storage
from pipelines.preparation.importing.reader import RawTable, file_sha256
from pipelines.preparation.validation import CheckedDataset
from pipelines.settings import Group

_RAW_FIELDS = ("dataset", "path", "source_columns", "sha256", "header_lines", "is_csv", "ignored_columns")


def fingerprint(group: Group) -> str:
    """What the checks depend on: the group's settings, less its description and schedule."""
    settings = group.model_dump_json(exclude={"description", "schedule", "source_file"})
    return hashlib.sha256(settings.encode()).hexdigest()


def save(checked: CheckedDataset, folder: Path, group_fingerprint: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    name = checked.dataset
    storage.write_parquet(checked.frame, _tmp(folder / f"{name}.parquet"))
    storage.write_parquet(checked.rejected.astype(str), _tmp(folder / f"{name}.rejected.parquet"))
    for suffix in ("parquet", "rejected.parquet"):
        _tmp(folder / f"{name}.{suffix}").replace(folder / f"{name}.{suffix}")
    raw = {k: v for k, v in asdict(checked.raw).items() if k in _RAW_FIELDS}
    meta = {
        "fingerprint": group_fingerprint,
        "raw": raw,
        "rows_read": checked.rows_read,
        "rows_after_as_of": checked.rows_after_as_of,
        "results": checked.results,
    }
    storage.write_json(folder / f"{name}.json", meta)  # written last: it marks the set complete


def load(group: Group, dataset: str, folder: Path, group_fingerprint: str) -> CheckedDataset | None:
    """The dataset as validated, or None if it was not, or the file or settings changed since."""
    meta_path = folder / f"{dataset}.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    path = group.dataset(dataset).path
    if meta["fingerprint"] != group_fingerprint or meta["raw"]["path"] != path:
        return None
    if file_sha256(path) != meta["raw"]["sha256"]:
        return None
    rejected = pd.read_parquet(folder / f"{dataset}.rejected.parquet")
    if len(rejected):
        rejected["line"] = rejected["line"].astype("int64")
    return CheckedDataset(
        dataset=dataset,
        raw=RawTable(frame=pd.DataFrame(), **meta["raw"]),
        frame=pd.read_parquet(folder / f"{dataset}.parquet"),
        rejected=rejected,
        rows_read=meta["rows_read"],
        rows_after_as_of=meta["rows_after_as_of"],
        results=meta["results"],
    )


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")
