"""The data and models view: per group, the newest validation (Great Expectations results, the rows
quarantined, a link to its Data Docs), the newest snapshot's manifest, and the model history from
MLflow's registry (each version with its aliases and the gate's decision with both scores).
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines import storage
from pipelines.serving.runtime import Runtime

QUARANTINE_ROWS = 20  # rejected rows shown per dataset


def status(runtime: Runtime, base: str) -> list[dict]:
    """One entry per group the server knows; ``base`` is where the views are served (for Data Docs links)."""
    return [group_status(group, base) for _, group in sorted(runtime.groups.items())]


def group_status(group, base: str) -> dict:
    return {"name": group.name, "kind": group.kind, "validation": validation(group, base),
            "snapshot": snapshot(group), "models": models(group)}  # fmt: skip


def _newest(folder: Path) -> Path | None:
    runs = sorted((p for p in folder.glob("as_of=*") if p.is_dir() and storage.parse_key(p.name) is not None),
                  key=lambda p: storage.parse_key(p.name))  # fmt: skip
    return runs[-1] if runs else None


def validation(group, base: str) -> dict | None:
    """The newest validation run, failed ones included: each dataset's expectations and quarantine."""
    folder = _newest(Path(group.storage_root) / "validation")
    if folder is None or not (folder / "summary.json").is_file():
        return None
    summary = json.loads((folder / "summary.json").read_text())
    datasets = {}
    for name, found in summary.get("datasets", {}).items():
        expectations = found.get("expectations", [])
        datasets[name] = {
            "file": found.get("file"), "rowsRead": found.get("rows_read"), "rowsRejected": found.get("rows_rejected"),
            "expectations": len(expectations), "failed": [e for e in expectations if not e.get("success")],
            "quarantine": _quarantine(folder / "staged" / f"{name}.rejected.parquet"),
        }  # fmt: skip
    docs = (folder / "docs" / "index.html").is_file()
    return {"asOf": summary.get("as_of"), "folder": folder.name, "datasets": datasets,
            "success": all(not d["failed"] for d in datasets.values()),
            "dataDocs": f"{base}/data-docs/{group.name}/{folder.name}/index.html" if docs else None}  # fmt: skip


def _quarantine(path: Path) -> dict:
    if not path.is_file():
        return {"rows": 0, "sample": []}
    import pandas as pd

    frame = pd.read_parquet(path)
    return {"rows": int(frame["line"].nunique()) if "line" in frame else len(frame),
            "sample": json.loads(frame.head(QUARANTINE_ROWS).astype(str).to_json(orient="records"))}  # fmt: skip


def snapshot(group) -> dict | None:
    """The newest complete snapshot's manifest: per dataset its rows, series or users and items, dates, fills."""
    import pandas as pd

    folder = storage.previous_snapshot(group.storage_root, pd.Timestamp.max)
    if folder is None or not (folder / "manifest.json").is_file():
        return None
    manifest = json.loads((folder / "manifest.json").read_text())
    keep = ("rows", "rows_read", "rows_rejected", "series", "users", "items", "start", "end", "filled",
            "cold_start_items", "event_types", "duplicate_events_dropped", "items_without_history")  # fmt: skip
    datasets = {name: {k: found[k] for k in keep if k in found} for name, found in manifest.get("datasets", {}).items()}
    return {"asOf": manifest.get("as_of"), "createdAt": manifest.get("created_at"), "folder": folder.name,
            "datasets": datasets}  # fmt: skip


def models(group) -> dict:
    """The registered model's versions, newest first, each with its aliases, scores and the gate's decision."""
    from pipelines.training import pyfunc, registry

    name = pyfunc.registered_name(group.kind, group.name)
    try:
        versions = registry.model_versions(name)
        aliases: dict[str, list[str]] = {}
        if versions:  # search results leave aliases out: the registered model holds them
            for alias, version in registry.client().get_registered_model(name).aliases.items():
                aliases.setdefault(str(version), []).append(alias)
    except Exception as exc:  # an unreachable registry is shown, not a failed page
        return {"name": name, "versions": [], "error": f"{type(exc).__name__}: {exc}"}
    rows = []
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        tags = dict(v.tags or {})
        metric = tags.get("gate.metric")
        rows.append({
            "version": str(v.version), "aliases": sorted(aliases.get(str(v.version), [])),
            "created": v.creation_timestamp,
            "runId": v.run_id, "metric": metric, "score": _float(tags.get(f"score.{metric}")) if metric else None,
            "decision": tags.get("gate.decision"), "reason": tags.get("gate.reason"),
            "championVersion": tags.get("gate.champion_version") or None,
            "championScore": _float(tags.get("gate.champion_score")),
        })  # fmt: skip
    return {"name": name, "versions": rows, "error": None}


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def data_docs_file(group, run: str, path: str) -> Path | None:
    """A file of a validation run's Data Docs, or None for anything outside that folder."""
    if storage.parse_key(run) is None:
        return None
    root = (Path(group.storage_root) / "validation" / run / "docs").resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target
