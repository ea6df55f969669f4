"""Versioned publishing with an atomic latest pointer."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.publish import latest, prune, publish


def write_rows(rows: int):
    def write(folder):
        pd.DataFrame({"x": range(rows)}).to_csv(folder / "export.csv", index=False)
        return {"rows": rows}

    return write


def test_publish_then_move_latest(tmp_path):
    first = publish(str(tmp_path), "forecast", pd.Timestamp("2024-01-01"), write_rows(3))
    assert latest(str(tmp_path), "forecast") == first
    second = publish(str(tmp_path), "forecast", pd.Timestamp("2024-02-01"), write_rows(5))
    assert latest(str(tmp_path), "forecast")["path"] == second["path"]
    assert second["rows"] == 5
    assert (tmp_path / "published/forecast/as_of=20240101T000000/export.csv").is_file()  # still there


def test_a_failed_publish_leaves_the_last_good_version(tmp_path):
    good = publish(str(tmp_path), "forecast", pd.Timestamp("2024-01-01"), write_rows(3))

    def broken(folder):
        (folder / "export.csv").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        publish(str(tmp_path), "forecast", pd.Timestamp("2024-02-01"), broken)
    assert latest(str(tmp_path), "forecast") == good
    assert not (tmp_path / "published/forecast/as_of=20240201T000000").exists()


def test_prune_keeps_the_newest_and_the_latest(tmp_path):
    for month in range(1, 6):
        publish(str(tmp_path), "recs", pd.Timestamp(f"2024-0{month}-01"), write_rows(month))
    removed = prune(str(tmp_path), "recs", keep=2)
    assert [p.name for p in removed] == ["as_of=20240101T000000", "as_of=20240201T000000", "as_of=20240301T000000"]
    assert latest(str(tmp_path), "recs")["rows"] == 5
