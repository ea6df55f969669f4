"""Versioned publishing with an atomic latest pointer."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.training.publish import latest, prune, publish


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


def test_republishing_a_version_never_leaves_its_folder_missing(tmp_path):
    """A reader following latest.json while the same as_of is published again always finds whole files."""
    import threading

    root, as_of = str(tmp_path), pd.Timestamp("2024-03-01")
    publish(root, "forecast", as_of, write_rows(10))
    done, seen, missing = threading.Event(), set(), []

    def republish():
        try:
            for rows in range(11, 71):
                publish(root, "forecast", as_of, write_rows(rows))
        finally:
            done.set()

    writer = threading.Thread(target=republish)
    writer.start()
    reads = 0
    while not done.is_set() or reads < 100:
        folder = latest(root, "forecast")["path"]
        try:
            frame = pd.read_csv(f"{folder}/export.csv")
        except FileNotFoundError as exc:
            missing.append(str(exc))
            continue
        finally:
            reads += 1
        assert frame["x"].tolist() == list(range(len(frame)))  # a whole version, never half of one
        seen.add(len(frame))
    writer.join()
    assert not missing, f"{len(missing)} of {reads} reads found no folder: {missing[:3]}"
    assert len(seen) > 1 and latest(root, "forecast")["rows"] == 70
    assert sorted(p.name for p in (tmp_path / "published" / "forecast").iterdir()) == [
        "as_of=20240301T000000",
        "latest.json",
    ]
