"""Shared fixtures: temporary dataset groups, the shared real data, example groups."""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AIRSIGHT_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test writes under its own AIRSIGHT_HOME and reads no groups but its own."""
    monkeypatch.setenv("AIRSIGHT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIRSIGHT_GROUPS_DIR", str(tmp_path / "groups.d"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data sets are not at {SHARED_DATA} (set AIRSIGHT_SHARED_DATA)")
    return SHARED_DATA


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class GroupFactory:
    """Writes data files and a settings file for a test group; returns the loaded group."""

    def __init__(self, root: Path):
        self.root = root

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
        return path

    def settings(self, body: dict, name: str | None = None) -> Path:
        body = {"storage": str(self.root / "out" / body["name"]), **body}
        path = self.root / "groups.d" / f"{name or body['name']}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return path

    def group(self, body: dict):
        from pipelines.settings import load_group

        return load_group(self.settings(body))


@pytest.fixture
def groups(tmp_path) -> GroupFactory:
    return GroupFactory(tmp_path)


RETAIL_SCHEMA = [
    {"name": "item_id", "type": "string"},
    {"name": "timestamp", "type": "timestamp"},
    {"name": "demand", "type": "float"},
]


def retail(path: str | Path, **extra) -> dict:
    """A minimal RETAIL daily group over one target file."""
    target_settings = {"path": str(path), "schema": copy.deepcopy(RETAIL_SCHEMA), **extra.pop("target", {})}
    return {
        "name": extra.pop("name", "shop"),
        "kind": "forecast",
        "domain": "RETAIL",
        "frequency": extra.pop("frequency", "1D"),
        "horizon": extra.pop("horizon", 7),
        "datasets": {"TARGET_TIME_SERIES": target_settings, **extra.pop("datasets", {})},
        **extra,
    }


def interactions_csv(users: int = 30, per_user: int = 40, start: int = 1_700_000_000) -> str:
    """A valid interactions file: users x items clicks, one minute apart."""
    lines = ["USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE"]
    for u in range(users):
        for k in range(per_user):
            value = "" if k % 3 else f"{k % 5}.5"
            lines.append(
                f"u{u},i{(u * 7 + k) % 50},{start + u * 10_000 + k * 60},{'click' if k % 4 else 'buy'},{value}"
            )
    return "\n".join(lines) + "\n"


INTERACTIONS_SCHEMA = [
    {"name": "USER_ID", "type": "string"},
    {"name": "ITEM_ID", "type": "string"},
    {"name": "TIMESTAMP", "type": "long"},
    {"name": "EVENT_TYPE", "type": "string"},
    {"name": "EVENT_VALUE", "type": ["null", "float"]},
]


def personalize(interactions: str | Path, **extra) -> dict:
    datasets = {"INTERACTIONS": {"path": str(interactions), "schema": copy.deepcopy(INTERACTIONS_SCHEMA)}}
    datasets.update(extra.pop("datasets", {}))
    return {"name": extra.pop("name", "recs"), "kind": "personalize", "datasets": datasets, **extra}
