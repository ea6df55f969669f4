"""Dataset group settings: domains, schemas, limits and errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import SettingsError
from pipelines.settings import discover_groups, find_group, load_group
from tests.conftest import personalize, retail


def error_for(groups, body) -> str:
    with pytest.raises(SettingsError) as info:
        load_group(groups.settings(body))
    return str(info.value)


@pytest.mark.parametrize(
    ("domain", "identifier", "target"),
    [
        ("RETAIL", "item_id", "demand"),
        ("CUSTOM", "item_id", "target_value"),
        ("INVENTORY_PLANNING", "item_id", "demand"),
        ("EC2_CAPACITY", "instance_type", "number_of_instances"),
        ("WORK_FORCE", "workforce_type", "workforce_demand"),
        ("WEB_TRAFFIC", "item_id", "value"),
        ("METRICS", "metric_name", "metric_value"),
    ],
)
def test_every_forecast_domain_and_its_required_fields(groups, domain, identifier, target):
    body = retail("t.csv", domain=domain)
    body["datasets"]["TARGET_TIME_SERIES"]["schema"] = [
        {"AttributeName": identifier, "AttributeType": "string"},
        {"AttributeName": "timestamp", "AttributeType": "timestamp"},
        {"AttributeName": target, "AttributeType": "float"},
    ]
    group = load_group(groups.settings(body))
    assert group.series_keys == [identifier]
    body["datasets"]["TARGET_TIME_SERIES"]["schema"][2]["AttributeName"] = "something_else"
    assert f"field '{target}' is required" in error_for(groups, body)


def test_paths_are_relative_to_the_settings_file(groups):
    group = load_group(groups.settings(retail("../data/t.csv")))
    assert group.datasets.TARGET_TIME_SERIES.path == str((groups.root / "data" / "t.csv").resolve())


def test_forecast_schema_rules(groups):
    body = retail("t.csv", forecast_dimensions=["store_id"])
    assert "forecast dimension field 'store_id' is required" in error_for(groups, body)
    body = retail("t.csv")
    body["datasets"]["TARGET_TIME_SERIES"]["schema"].append({"name": "price", "type": "float"})
    assert "move them to RELATED_TIME_SERIES" in error_for(groups, body)
    body = retail("t.csv", horizon=501)
    assert "key horizon" in error_for(groups, body)
    body = retail("t.csv", frequency="2Y")
    assert "Y takes a multiple from 1 to 1" in error_for(groups, body)
    body = retail("t.csv", frequency="1H", time_alignment_boundary={"hour": 3})
    assert "does not apply to frequency 1H" in error_for(groups, body)


def test_column_limits(groups):
    dims = [f"d{i}" for i in range(11)]
    body = retail("t.csv", forecast_dimensions=dims)
    assert "forecast_dimensions" in error_for(groups, body)
    meta = [{"name": "item_id", "type": "string"}] + [{"name": f"m{i}", "type": "string"} for i in range(10)]
    body = retail("t.csv", datasets={"ITEM_METADATA": {"path": "m.csv", "schema": meta}})
    assert "ITEM_METADATA: 11 columns; Forecast allows 10" in error_for(groups, body)


def test_personalize_schemas(groups):
    load_group(groups.settings(personalize("i.csv")))
    body = personalize(
        "i.csv", datasets={"USERS": {"path": "u.csv", "schema": [{"name": "USER_ID", "type": "string"}]}}
    )
    assert "Personalize takes 1 to 5" in error_for(groups, body)
    body = personalize("i.csv")
    body["datasets"]["INTERACTIONS"]["schema"] = body["datasets"]["INTERACTIONS"]["schema"][1:]
    assert "field 'USER_ID' is required" in error_for(groups, body)


def test_headerless_files_take_the_schema_order(groups):
    body = retail("t.csv", target={"header": False})
    group = load_group(groups.settings(body))
    assert group.datasets.TARGET_TIME_SERIES.columns == ["item_id", "timestamp", "demand"]


def test_not_yaml_and_wrong_kind(groups, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_group(bad)
    bad.write_text("name: x\nkind: predictor\n")
    with pytest.raises(SettingsError, match="key kind"):
        load_group(bad)


def test_discover_and_find_groups(groups):
    groups.settings(retail("t.csv", name="alpha"))
    groups.settings(personalize("i.csv", name="beta"))
    assert [p.stem for p in discover_groups()] == ["alpha", "beta"]
    assert find_group("beta").kind == "personalize"
    with pytest.raises(SettingsError, match="no dataset group named"):
        find_group("gamma")


def test_personalize_reserved_fields_have_their_types(groups):
    body = personalize("i.csv")
    body["datasets"]["INTERACTIONS"]["schema"][4] = {"name": "EVENT_VALUE", "type": "string"}
    assert "field 'EVENT_VALUE' has type string, expected float or integer" in error_for(groups, body)


def test_algorithm_params_are_checked_against_each_algorithms_ranges_naming_the_key(tmp_path):
    import yaml

    from pipelines.example_data import write_examples

    path = write_examples(tmp_path)["retail_demo"]
    raw = yaml.safe_load(path.read_text())
    cases = {
        "DeepAR+: {epochs: 5000}": "DeepAR+.epochs: Input should be less than or equal to 1000",
        "DeepAR+: {epoch: 5}": "DeepAR+.epoch: unknown hyperparameter; DeepAR+ takes context_length, epochs",
        "Prophet: {seasonality_mode: cubic}": "Prophet.seasonality_mode: Input should be 'additive' or 'multipl",
        "AutoPredictor: {candidates: [ETS, AutoPredictor]}": "AutoPredictor.candidates.1",
        "CNN: {}": "no algorithm named ['CNN']",
    }
    for text, message in cases.items():
        raw["training"] = {"algorithm_params": yaml.safe_load(text)}
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(SettingsError) as info:
            load_group(path)
        assert "key training.algorithm_params" in str(info.value) and message in str(info.value), str(info.value)
    raw["training"] = {"algorithm_params": {"DeepAR+": {"epochs": 20, "context_length": 56}}}
    path.write_text(yaml.safe_dump(raw))
    assert load_group(path).training.algorithm_params == {"DeepAR+": {"epochs": 20, "context_length": 56}}


def test_every_algorithm_has_a_hyperparameter_model_matching_its_constructor():
    import inspect

    from pipelines import domains
    from pipelines.forecast import hyperparameters
    from pipelines.forecast.base import algorithm_class

    assert set(hyperparameters.MODELS) == set(domains.FORECAST_ALGORITHMS)
    for name, model in hyperparameters.MODELS.items():
        taken = set(inspect.signature(algorithm_class(name).__init__).parameters)
        assert set(model.model_fields) <= taken, (name, set(model.model_fields) - taken)


def test_batch_segments_take_queries_or_a_file_and_name_unknown_item_fields(groups):
    schema = [{"name": "ITEM_ID", "type": "string"}, {"name": "GENRES", "type": "string", "categorical": True}]
    items = {"ITEMS": {"path": "items.csv", "schema": schema}}
    queries = [{"itemId": 105}, {"itemAttributes": 'ITEMS.genres = "Comedy"'}]
    group = load_group(groups.settings(personalize("i.csv", datasets=items, batch_segments=queries)))
    assert group.batch_segments.queries == queries and group.batch_segments.num_results == 25
    group = load_group(groups.settings(personalize("i.csv", batch_segments="queries.jsonl")))
    assert group.batch_segments.path == str(groups.root / "groups.d" / "queries.jsonl")  # beside the settings
    assert "one of the two" in error_for(groups, personalize("i.csv", batch_segments={"num_results": 5}))
    bad = personalize("i.csv", datasets=items, batch_segments=[{"itemAttributes": 'ITEMS.COLOUR = "red"'}])
    assert "batch_segments.queries[0].itemAttributes: ITEMS has no field 'COLOUR'" in error_for(groups, bad)
    assert "no ITEMS dataset" in error_for(groups, personalize("i.csv", batch_segments=queries))
    assert "one key, itemId or itemAttributes" in error_for(
        groups, personalize("i.csv", batch_segments=[{"userId": 1}])
    )


def test_domain_recommenders_are_presets_of_the_domain_with_their_event_types(groups):
    path = groups.settings(personalize("i.csv", domain="ECOMMERCE", recommenders=["best_sellers", "most_viewed"],
                                       recommender_event_types={"View": ["click"]}))  # fmt: skip
    group = load_group(path)
    best = load_group(f"{path}#best_sellers")  # a recommender's own group, as its DAG loads it
    assert best.name == "recs__best_sellers" and best.recommender_of == "recs" and best.recommenders == []
    assert best.training.recipes == ["popularity-count"]
    assert best.training_filter.event_types == ["Purchase", "purchase"]  # not mapped: its own name, two cases
    viewed = group.recommender_group("most_viewed")
    assert viewed.training_filter.event_types == ["click"] and viewed.datasets == group.datasets
    assert viewed.storage_root == str(Path(group.storage_root) / "recommenders" / "most_viewed")  # its own folder
    assert [g.name for g in group.with_recommenders()] == ["recs", "recs__best_sellers", "recs__most_viewed"]
    with pytest.raises(SettingsError, match="has no 'top_picks'"):
        load_group(f"{path}#top_picks")
    assert "a CUSTOM dataset group has none" in error_for(groups, personalize("i.csv", recommenders=["best_sellers"]))
    assert "'top_picks' is not a ECOMMERCE recommender" in error_for(
        groups, personalize("i.csv", domain="ECOMMERCE", recommenders=["top_picks"])
    )
    assert "'Watch' is not an event type of the ECOMMERCE domain" in error_for(
        groups, personalize("i.csv", domain="ECOMMERCE", recommender_event_types={"Watch": ["play"]})
    )
