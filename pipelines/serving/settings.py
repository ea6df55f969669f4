"""How the serving API is configured: environment variables, read once when the app is built.

The defaults serve every dataset group in ``$AIRSIGHT_GROUPS_DIR`` from one SQLite store under
``$AIRSIGHT_HOME``; setting ``AIRSIGHT_SERVING_DB`` to a ``postgresql://`` URL moves events,
filters and API keys to PostgreSQL (what several servers or worker processes share).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("AIRSIGHT_HOME") or Path.cwd() / ".airsight")


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw not in (None, "") else default
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r}: expected a number") from exc


@dataclass
class ServingSettings:
    """Everything the app reads from its environment; tests build one directly."""

    database_url: str = ""  # sqlite:///path or postgresql://...; empty: SQLite under $AIRSIGHT_HOME
    groups: list[str] | None = None  # group names or settings files; None: every group discovered
    groups_dir: str | None = None  # where to discover groups; None: $AIRSIGHT_GROUPS_DIR
    poll_seconds: float = 5.0  # how often the champion alias and latest.json are checked
    max_body_bytes: int = 256 * 1024  # larger requests get 413 before they are read
    key_cache_seconds: float = 10.0  # a revoked key stops working within this time
    load_models: bool = True  # False: forecasts, filters and events only (no MLflow)
    sync_reads: bool = True  # read requests first apply events other processes stored
    batch_dir: str | None = None  # batch jobs read and write only under it; None: $AIRSIGHT_HOME/batch
    recommendation_id_seconds: float = 3600.0  # how long PutEvents can name an answer's recommendationId
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> ServingSettings:
        groups = os.environ.get("AIRSIGHT_SERVING_GROUPS")
        return cls(
            database_url=os.environ.get("AIRSIGHT_SERVING_DB", ""),
            groups=[g.strip() for g in groups.split(",") if g.strip()] if groups else None,
            groups_dir=os.environ.get("AIRSIGHT_GROUPS_DIR") or None,
            poll_seconds=_float("AIRSIGHT_SERVING_POLL_SECONDS", 5.0),
            max_body_bytes=int(_float("AIRSIGHT_SERVING_MAX_BODY_BYTES", 256 * 1024)),
            key_cache_seconds=_float("AIRSIGHT_SERVING_KEY_CACHE_SECONDS", 10.0),
            batch_dir=os.environ.get("AIRSIGHT_SERVING_BATCH_DIR") or None,
            recommendation_id_seconds=_float("AIRSIGHT_SERVING_RECOMMENDATION_ID_SECONDS", 3600.0),
            sync_reads=os.environ.get("AIRSIGHT_SERVING_SYNC_READS", "1") not in ("0", "false", "no"),
        )

    def resolved_batch_dir(self) -> Path:
        return Path(self.batch_dir) if self.batch_dir else home() / "batch"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        path = home() / "serving.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
