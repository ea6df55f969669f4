"""`airsight serve` options that manage keys and export events, run through its own parser."""

from __future__ import annotations

import argparse

import pandas as pd

from pipelines.serving import cli
from pipelines.serving.auth import KeyChecker
from pipelines.serving.store import Store
from tests.serving.conftest import SHOP


def serve(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def test_keys_are_created_once_listed_and_revoked(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    assert serve("--database", url, "--create-key", "ops", "--scopes", "read,admin") == 0
    key = capsys.readouterr().out.strip()
    store = Store(url)
    assert KeyChecker(store, 0).check(key, "admin").name == "ops"
    assert serve("--database", url, "--create-key", "ops") == 2  # the name is taken
    assert serve("--database", url, "--create-key", "bad", "--scopes", "root") == 2
    capsys.readouterr()
    assert serve("--database", url, "--list-keys") == 0
    listing = capsys.readouterr().out
    assert "ops" in listing and "active" in listing and key.rsplit("_", 1)[-1] not in listing
    assert serve("--database", url, "--revoke-key", "ops") == 0 and serve("--database", url, "--revoke-key", "ops") == 2
    assert KeyChecker(store, 0)._lookup(key) is None
    store.close()


def test_export_events_appends_to_the_groups_events_file(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    (tmp_path / "shop.yaml").write_text(SHOP.format(name="shop"))
    store = Store(url)
    event = {"eventType": "click", "itemId": "a_i09", "sentAt": 1_900_000_000}
    store.put_events("shop", "shop", "cli-user", "s", [event])
    assert serve("--database", url, "--export-events", str(tmp_path / "shop.yaml")) == 0
    assert "appended" in capsys.readouterr().out
    out = tmp_path / "shop_store" / "events" / "INTERACTIONS_events.csv"  # the group's default events file
    frame = pd.read_csv(out)
    assert ("cli-user", "a_i09") in set(zip(frame.USER_ID, frame.ITEM_ID, strict=True))
    store.close()
