"""The Personalize DAG publishes the user segments its group's settings ask for (batch_segments.jsonl).

One dag.test() run of the example group with ``batch_segments`` queries of both kinds and SIMS
alone: the published folder holds one line per query beside batch_recommendations.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipelines.settings import load_group
from pipelines.training import publish

DAG_ID = "personalize__interactions_demo"
SEGMENTS = """\
training:
  recipes: [sims]
batch_segments:
  num_results: 12
  queries:
    - {itemId: i0001}
    - {itemAttributes: 'ITEMS.GENRES = "Comedy"'}
    - {itemAttributes: 'ITEMS.genres = "Comedy" AND ITEMS.GENRES = "Family"'}
    - {itemId: not-an-item}
"""


def test_the_dag_publishes_the_segments_the_group_asks_for(airflow_home, example_groups):
    from airflow.dag_processing.dagbag import DagBag

    from pipelines.launch.demo import DAGS_FOLDER

    settings = Path(example_groups["interactions_demo"])
    settings.write_text(settings.read_text() + SEGMENTS)
    run = DagBag(dag_folder=str(DAGS_FOLDER)).dags[DAG_ID].test(run_conf={"as_of": "2024-06-01"})
    assert str(run.state) == "success"

    group = load_group(settings)
    published = Path(publish.latest(group.storage_root, "personalize")["path"])
    assert (published / "batch_recommendations.jsonl").is_file()
    lines = [json.loads(line) for line in (published / "batch_segments.jsonl").read_text().splitlines()]
    assert [line["input"] for line in lines] == [dict(q) for q in group.batch_segments.queries]
    users = set(pd.read_csv(Path(group.datasets.INTERACTIONS.path))["USER_ID"].astype(str))
    for line in lines[:3]:
        assert line["error"] is None and len(line["output"]["usersList"]) == 12, line
        assert set(line["output"]["usersList"]) <= users
    assert lines[3] == {"input": {"itemId": "not-an-item"}, "output": None,
                        "error": "line 4: itemId 'not-an-item' is unknown to the model"}  # fmt: skip
