"""An embedded Airflow for DAG tests: SQLite metadata database in a temporary AIRFLOW_HOME."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    from pipelines.launch.demo import prepare_airflow

    home = tmp_path_factory.mktemp("airflow")
    prepare_airflow(home)
    return home


@pytest.fixture
def example_groups(tmp_path, monkeypatch):
    """The built-in example groups, as `airsight example-data` writes them."""
    from pipelines.example_data import write_examples

    written = write_examples(tmp_path / "examples")
    monkeypatch.setenv("AIRSIGHT_GROUPS_DIR", str(tmp_path / "examples" / "groups.d"))
    return written


def retail_group(tmp_path, monkeypatch, items: int = 4, new_items: int = 1, edit=None):
    """A generated retail group (``items`` items, 240 days, related series, metadata, US holidays), its
    settings (a dict) through ``edit``; the only group in AIRSIGHT_GROUPS_DIR."""
    import yaml

    from pipelines.example_data import RETAIL_SETTINGS, retail
    from pipelines.settings import load_group

    folder = tmp_path / "retail_demo"
    folder.mkdir()
    for name, frame in retail(items=items, stores=1, days=240, horizon=14, new_items=new_items).items():
        frame.to_csv(folder / name, index=False)
    groups = tmp_path / "groups.d"
    groups.mkdir()
    path = groups / "retail_demo.yaml"
    text = RETAIL_SETTINGS.format(horizon=14)
    path.write_text(text if edit is None else yaml.safe_dump(edit(yaml.safe_load(text)) or {}))
    monkeypatch.setenv("AIRSIGHT_GROUPS_DIR", str(groups))
    return load_group(path)


@pytest.fixture
def tiny_retail(tmp_path, monkeypatch):
    """The tiny retail group: four items and a new one."""
    return retail_group(tmp_path, monkeypatch)
