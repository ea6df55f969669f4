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
