"""``airsight bench personalize``: the stable interface on a tiny generated data set."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys

import numpy as np
import pytest

from pipelines.benchmarking import personalize as bench
from pipelines.personalize import RECIPES, InteractionData, get_recipe
from pipelines.personalize.evaluation import METRICS, evaluate
from tests.personalize.conftest import two_groups

MEASURED = ("train_seconds", "peak_memory_mb", "memory_added_mb", "recommend_p50_ms", "recommend_p99_ms", "test_users")
HAS_IMPLICIT = importlib.util.find_spec("implicit") is not None


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    interactions = two_groups()
    interactions.to_csv(folder / "interactions.csv", index=False)
    items = np.unique(interactions["ITEM_ID"])
    with open(folder / "items.csv", "w") as handle:
        handle.write("ITEM_ID,GENRE\n" + "".join(f"{i},{i[0].upper()}|X\n" for i in items))
    return folder


def command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(argv))


def test_personalize_protocol_result_has_one_entry_per_model_with_mean_and_std(files, tmp_path):
    out = tmp_path / "result.json"
    argv = ["--interactions", str(files / "interactions.csv"), "--items", str(files / "items.csv")]
    argv += ["--recipes", "popularity-count,sims", "--repeats", "3", "--latency-users", "20", "--quiet"]
    assert command([*argv, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["protocol"] == "personalize" and result["repeats"] == 3 and result["seeds"] == [42, 43, 44]
    assert result["data"] == {
        "users": 120,
        "items": 60,
        "interactions": 1440,
        "interactions_file": str(files / "interactions.csv"),
        "items_file": str(files / "items.csv"),
        "users_file": None,
    }
    popular, sims = result["models"]
    assert [popular["name"], sims["name"]] == ["popularity-count", "sims"]
    assert popular["kind"] == "recipe" and sims["hyperparameters"] == get_recipe("sims").get_params()
    for entry in result["models"]:
        for key in (*METRICS, *MEASURED):
            values = entry[key]["values"]
            assert len(values) == 3
            assert entry[key]["mean"] == pytest.approx(np.mean(values), rel=1e-5)
            assert entry[key]["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-5, abs=1e-9)
        assert entry["recommend_p99_ms"]["mean"] >= entry["recommend_p50_ms"]["mean"] > 0
        assert entry["peak_memory_mb"]["mean"] > 0
    # the split differs between repeats, and the two taste groups are what SIMS finds and popularity cannot
    assert len(set(popular["normalized_discounted_cumulative_gain_at_10"]["values"])) > 1
    ndcg = "normalized_discounted_cumulative_gain_at_10"
    assert sims[ndcg]["mean"] > 1.5 * popular[ndcg]["mean"]


def test_each_repeat_is_exactly_the_evaluation_protocol(files):
    data = bench.load_data(str(files / "interactions.csv"), str(files / "items.csv"))
    for seed in (42, 43):
        measured = bench.measure(get_recipe("sims"), data, "personalize", seed, latency_users=5)
        assert {k: measured[k] for k in METRICS} == evaluate(get_recipe("sims"), data, seed=seed)["metrics"]


def test_leave_last_out_reports_recall_and_ndcg_at_10_and_one_repeat_has_no_std(files, tmp_path):
    out = tmp_path / "lloo.json"
    argv = ["--interactions", str(files / "interactions.csv"), "--recipes", "sims", "--protocol", "leave-last-out"]
    assert command([*argv, "--latency-users", "10", "--quiet", "--out", str(out)]) == 0
    (entry,) = json.loads(out.read_text())["models"]
    assert {"recall_at_10", "ndcg_at_10"} <= set(entry) and "coverage" not in entry
    assert entry["recall_at_10"]["std"] is None and len(entry["recall_at_10"]["values"]) == 1
    assert 0 < entry["ndcg_at_10"]["mean"] <= entry["recall_at_10"]["mean"] <= 1


@pytest.mark.skipif(not HAS_IMPLICIT, reason="implicit (the bench extra) is not installed: peers cannot run")
def test_peers_run_through_the_same_protocol(files, tmp_path):
    out = tmp_path / "peers.json"
    argv = ["--interactions", str(files / "interactions.csv"), "--recipes", "popularity-count", "--peers"]
    assert command([*argv, "--repeats", "2", "--latency-users", "10", "--quiet", "--out", str(out)]) == 0
    entries = json.loads(out.read_text())["models"]
    assert [e["name"] for e in entries] == ["popularity-count", "implicit.als", "implicit.bpr"]
    assert [e["kind"] for e in entries] == ["recipe", "peer", "peer"]
    assert all(e["normalized_discounted_cumulative_gain_at_10"]["mean"] > 0 for e in entries)
    assert "implicit.als" not in RECIPES and "implicit.bpr" not in RECIPES  # peers never become recipes
    # Each peer ran the best point of its grid, scored on a split of its own.
    tuning = json.loads(out.read_text())["peer_tuning"]
    assert tuning["method"] == "grid" and tuning["seed"] == 42 + bench.TUNING_SEED_OFFSET
    for entry in entries[1:]:
        points = tuning["points"][entry["name"]]
        grid = bench.PEER_GRIDS[entry["name"]]
        assert len(points) == np.prod([len(v) for v in grid.values()])
        best = max(points, key=lambda p: p["ndcg_at_10"])
        assert {k: entry["hyperparameters"][k] for k in grid} == {k: best[k] for k in grid}


@pytest.mark.skipif(not HAS_IMPLICIT, reason="implicit (the bench extra) is not installed: peers cannot run")
def test_untuned_peers_run_implicits_defaults(files, tmp_path):
    out = tmp_path / "peers.json"
    argv = ["--interactions", str(files / "interactions.csv"), "--recipes", "popularity-count", "--peers"]
    assert command([*argv, "--peer-tuning", "none", "--latency-users", "10", "--quiet", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["models"][1]["hyperparameters"]["factors"] == 100 and result["peer_tuning"]["points"] == {}


@pytest.mark.skipif(not HAS_IMPLICIT, reason="implicit (the bench extra) is not installed: peers cannot run")
def test_peer_recommendations_leave_out_seen_items_and_rank_by_factors(files):
    data = bench.load_data(str(files / "interactions.csv"))
    als, _ = bench.peer_recipes()
    model = als(iterations=5).fit(data)
    user = data.user_ids[3]
    seen = set(data.item_ids[data.items[data.users == 3]])
    recommended = [item for item, _ in model.recommend(user, n=10)]
    assert len(recommended) == 10 and not seen & set(recommended)
    scores = model.item_factors_ @ model.user_factors_[3]
    unseen = [i for i in np.argsort(-scores) if data.item_ids[i] not in seen]
    assert recommended == [data.item_ids[i] for i in unseen[:10]]


def test_peers_without_implicit_is_a_clear_error(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "implicit", None)  # import implicit now raises ImportError
    argv = ["--interactions", str(files / "interactions.csv"), "--peers", "--out", str(tmp_path / "r.json")]
    assert command(argv) == 2
    assert "the implicit package is not installed" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("USER_ID,ITEM,TIMESTAMP\nu1,i1,1\n", [], "missing column(s) ['ITEM_ID']"),
        ("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1\nu2,i2,yesterday\n", [], "line 3: TIMESTAMP 'yesterday'"),
        ("USER_ID,ITEM_ID,TIMESTAMP\nu1,,1\n", [], "line 2: empty ITEM_ID"),
        ("USER_ID,ITEM_ID,TIMESTAMP\n", [], "no interactions"),
        ("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1\n", ["--recipes", "nope"], "unknown recipe 'nope'"),
        ("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1\n", ["--repeats", "0"], "--repeats must be at least 1"),
        ("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1\n", ["--items", "/nonexistent.csv"], "--items /nonexistent.csv: no such"),
    ],
)
def test_bad_input_exits_2_naming_what_is_wrong(tmp_path, capsys, content, extra, message):
    (tmp_path / "i.csv").write_text(content)
    assert command(["--interactions", str(tmp_path / "i.csv"), *extra, "--out", str(tmp_path / "r.json")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_iso_and_epoch_timestamps_and_lowercase_headers_are_read(tmp_path):
    (tmp_path / "i.csv").write_text(
        "user_id,item_id,timestamp,event_type\n"
        "u1,007,2024-01-02T03:04:05Z,click\nu1,8,2024-01-01,click\nu2,9,1704067100,click\n"
    )
    data = bench.load_data(str(tmp_path / "i.csv"))
    assert isinstance(data, InteractionData)
    assert data.item_ids.tolist() == ["9", "8", "007"]  # ids stay text; events in time order
    assert data.timestamps.tolist() == [1704067100, 1704067200, 1704164645]
