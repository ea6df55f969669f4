"""The airsight command: exit codes scripts can rely on, and the example data."""

from __future__ import annotations

import json
import subprocess
import sys

from pipelines.cli import main
from tests.conftest import retail, sha256

GOOD = "item_id,timestamp,demand\n" + "".join(f"a,2024-01-{d:02d},{d}\n" for d in range(1, 11))


def test_validate_and_import_by_group_name(groups, capsys):
    path = groups.file("t.csv", GOOD)
    groups.settings(retail(path))
    assert main(["validate", "shop", "--as-of", "2024-02-01"]) == 0
    assert json.loads(capsys.readouterr().out)["datasets"]["TARGET_TIME_SERIES"]["rows_read"] == 10
    assert main(["import", "shop", "--as-of", "2024-02-01"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["snapshot"].endswith("as_of=20240201T000000")


def test_exit_codes(groups, capsys):
    assert main(["validate", "nowhere"]) == 2  # no such group: a settings problem
    path = groups.file("t.csv", GOOD + "a,2024-01-11,-1\n")
    groups.settings(retail(path))
    assert main(["import", "shop", "--as-of", "2024-02-01"]) == 3  # bad data, nothing written
    err = capsys.readouterr().err
    assert "non_negative_target" in err and "line 12" in err


def test_console_script_runs(groups):
    path = groups.file("t.csv", GOOD)
    settings = groups.settings(retail(path))
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "validate", str(settings), "--as-of", "2024-02-01"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_example_data_is_reproducible_and_realistic(tmp_path, capsys):
    assert main(["example-data", str(tmp_path / "one")]) == 0
    assert main(["example-data", str(tmp_path / "two")]) == 0
    for name in ("retail_demo/target.csv", "retail_demo/related.csv", "interactions_demo/interactions.csv"):
        assert sha256(tmp_path / "one" / name) == sha256(tmp_path / "two" / name)
    import pandas as pd

    target = pd.read_csv(tmp_path / "one/retail_demo/target.csv")
    related = pd.read_csv(tmp_path / "one/retail_demo/related.csv")
    items = pd.read_csv(tmp_path / "one/retail_demo/items.csv")
    assert related["timestamp"].max() > target["timestamp"].max()  # future prices and promotions
    assert set(items["item_id"]) - set(target["item_id"])  # new items: metadata only
    zero_share = target.assign(zero=target.demand == 0).groupby("item_id")["zero"].mean()
    assert (zero_share > 0.5).any() and (zero_share < 0.05).any()  # intermittent and regular items
    inter = pd.read_csv(tmp_path / "one/interactions_demo/interactions.csv")
    assert set(inter["EVENT_TYPE"]) == {"click", "purchase"}
    assert inter.groupby("USER_ID")["SESSION_ID"].nunique().max() > 1


def test_demo_groups_validate(tmp_path, monkeypatch, capsys):
    main(["example-data", str(tmp_path / "ex")])
    monkeypatch.setenv("AIRSIGHT_GROUPS_DIR", str(tmp_path / "ex" / "groups.d"))
    assert main(["groups"]) == 0
    assert "retail_demo\tforecast" in capsys.readouterr().out
    assert main(["validate", "retail_demo"]) == 0
    assert main(["validate", "interactions_demo"]) == 0
