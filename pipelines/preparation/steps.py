"""The DAG steps: each takes a dataset group and an as_of, and returns a small manifest.

``validate_schema`` runs every dataset's Great Expectations suites, writes Data Docs and stages
the validated datasets; ``import_data`` takes them from there when the raw files and settings
are unchanged (and checks again when not), builds the snapshot and moves it into place in one
rename. Neither touches the raw files; a failure leaves the previous snapshot as it was.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipelines import domains as d
from pipelines import storage
from pipelines.settings import ForecastGroup, Group

log = logging.getLogger(__name__)


def dataset_types(group: Group) -> list[str]:
    kinds = d.FORECAST_DATASET_TYPES if isinstance(group, ForecastGroup) else d.PERSONALIZE_DATASET_TYPES
    return [k for k in kinds if group.dataset(k) is not None]


def _check_all(group: Group, as_of: pd.Timestamp, progress=None, reuse: bool = False) -> tuple[dict, Path]:
    """Check every dataset and keep it staged for the import step.

    With ``reuse``, a dataset already validated for this as_of, from the same bytes and
    settings, is taken as it was staged instead of being checked again. Data Docs are
    written when anything was checked, and on failure.
    """
    from pipelines.preparation import staging
    from pipelines.preparation.validation import Validator

    root = storage.validation_dir(group.storage_root, as_of)
    validator = Validator(group, as_of, docs_dir=root / "docs")
    key = staging.fingerprint(group)
    checked, fresh = {}, False
    for kind in dataset_types(group):
        if progress:
            progress(f"checking {kind}")
        checked[kind] = staging.load(group, kind, root / "staged", key) if reuse else None
        if checked[kind] is None:
            checked[kind] = validator.check(kind)
            staging.save(checked[kind], root / "staged", key)
            fresh = True
        else:
            log.info("%s: reusing the validation of %s (same sha256 and settings)", kind, checked[kind].raw.path)
    if fresh:
        validator.runner.build_docs()
    return checked, root / "docs"


def validate_schema(group: Group, as_of=None, progress=None) -> dict:
    """Run the suites of every dataset in the group; raise DataError on the first failure."""
    as_of = storage.resolve_as_of(as_of)
    checked, docs = _check_all(group, as_of, progress)
    manifest = {
        "group": group.name,
        "kind": group.kind,
        "as_of": as_of.isoformat(),
        "data_docs": str(docs / "index.html"),
        "datasets": {k: c.summary() for k, c in checked.items()},
    }
    storage.write_json(storage.validation_dir(group.storage_root, as_of) / "summary.json", manifest)
    return _small(manifest)


def import_data(group: Group, as_of=None, progress=None, validated: dict | None = None) -> dict:
    """Validate, then build and publish the snapshot for ``as_of``; return its manifest.

    ``validated`` is validate_schema's manifest when a DAG ran it first: a file whose sha256
    differs from the one validated then is noted in the manifest (it was checked again here).
    """
    import pyarrow as pa

    as_of = storage.resolve_as_of(as_of)
    checked, docs = _check_all(group, as_of, progress, reuse=True)
    previous = _previous_frames(group, as_of)
    if progress:
        progress("building snapshot")
    if isinstance(group, ForecastGroup):
        from pipelines.preparation.importing.forecast import build_forecast_snapshot

        frames, details = build_forecast_snapshot(group, checked, previous)
    else:
        from pipelines.preparation.importing.personalize import build_personalize_snapshot

        frames, details = build_personalize_snapshot(group, checked, previous)
    target = storage.snapshot_dir(group.storage_root, as_of)
    manifest = {
        "group": group.name,
        "kind": group.kind,
        "as_of": as_of.isoformat(),
        "snapshot": str(target),
        "data_docs": str(docs / "index.html"),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "incremental_base": previous.get("_path"),
        "datasets": {},
    }
    with storage.atomic_dir(target) as tmp:
        for kind, frame in frames.items():
            storage.write_parquet(frame, tmp / f"{kind}.parquet")
            rejected = checked[kind].rejected
            entry = {
                "file": f"{kind}.parquet",
                **checked[kind].summary(),
                **details.get(kind, {}),
                "columns": list(frame.column_names if isinstance(frame, pa.Table) else frame.columns),
            }
            entry.pop("expectations", None)
            if validated:
                before = validated.get("datasets", {}).get(kind, {}).get("sha256")
                entry["changed_since_validation"] = before is not None and before != entry["sha256"]
            if len(rejected):
                (tmp / "quarantine").mkdir(exist_ok=True)
                rejected.to_csv(tmp / "quarantine" / f"{kind}.csv", index=False)
                entry["quarantine"] = f"quarantine/{kind}.csv"
            manifest["datasets"][kind] = entry
        storage.write_json(tmp / "manifest.json", manifest)
    log.info("snapshot for %s as of %s written to %s", group.name, as_of, target)
    return _small(manifest)


def _previous_frames(group: Group, as_of: pd.Timestamp) -> dict:
    """For INCREMENTAL datasets, the frames of the latest snapshot before as_of."""
    wanted = [k for k in dataset_types(group) if group.dataset(k).import_mode == "INCREMENTAL"]
    if not wanted:
        return {}
    base = storage.previous_snapshot(group.storage_root, as_of)
    if base is None:
        return {}
    frames = {"_path": str(base)}
    for kind in wanted:
        path = base / f"{kind}.parquet"
        if path.is_file():
            frames[kind] = pd.read_parquet(path)
    return frames


def _small(manifest: dict) -> dict:
    """What goes through XCom: counts and paths, never rows."""
    keep = ("file", "rows", "rows_read", "rows_rejected", "rows_after_as_of", "series", "start", "end",
            "users", "items", "duplicate_events_dropped", "filled", "quarantine", "sha256")  # fmt: skip
    out = {k: v for k, v in manifest.items() if k != "datasets"}
    out["datasets"] = {
        kind: {k: v for k, v in entry.items() if k in keep} for kind, entry in manifest["datasets"].items()
    }
    return out
