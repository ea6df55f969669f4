"""Atomic snapshot writes and as_of keys."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines import storage


def test_as_of_is_naive_utc_to_the_second():
    assert storage.resolve_as_of("2024-05-01T02:30:15.9+02:00") == pd.Timestamp("2024-05-01 00:30:15")
    assert storage.as_of_key(pd.Timestamp("2024-05-01")) == "as_of=20240501T000000"


def test_failed_write_leaves_the_old_folder(tmp_path):
    target = tmp_path / "snap"
    with storage.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), storage.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("boom")
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["snap"]  # no temporary folders left behind
    with storage.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "new"


def test_previous_snapshot_ignores_incomplete_and_later_ones(tmp_path):
    for key in ("20240101T000000", "20240201T000000", "20240301T000000"):
        (tmp_path / "snapshots" / f"as_of={key}").mkdir(parents=True)
    (tmp_path / "snapshots/as_of=20240101T000000/manifest.json").write_text("{}")
    (tmp_path / "snapshots/as_of=20240301T000000/manifest.json").write_text("{}")
    found = storage.previous_snapshot(str(tmp_path), pd.Timestamp("2024-03-01"))
    assert found.name == "as_of=20240101T000000"
