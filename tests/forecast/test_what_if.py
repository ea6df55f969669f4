"""What-if scenarios: transformations and replacements of the future related series, on a fitted model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast import what_if
from pipelines.forecast.auto_predictor import AutoPredictor
from pipelines.forecast.base import get_algorithm
from tests.forecast.test_deepar import promotions


def scenario(**body) -> what_if.Scenario:
    return what_if.Scenario.model_validate({"name": "s", **body})


@pytest.fixture(scope="module")
def data():
    """Four items, +30 on promotion days, no promotion in the horizon; items a, b are toys."""
    base = promotions(0.0)
    meta = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "category": ["toys", "toys", "food", "food"]})
    return dataclasses.replace(base, item_metadata=meta)


PROMOTE_TOYS = {
    "transformations": [
        {
            "action": {"attribute": "promotion", "operation": "ADD", "value": 1},
            "conditions": [{"attribute": "category", "value": "toys", "condition": "EQUALS"}],
        }
    ]
}


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ARIMA", {}),
        ("Prophet", {"num_samples": 200}),
        ("CNN-QR", {"epochs": 25, "context_length": 14, "channels": 16, "num_batches_per_epoch": 20}),
        ("AutoPredictor", {"candidates": ["ARIMA", "SeasonalNaive"]}),
    ],
)
def test_only_the_items_the_conditions_match_change_and_by_the_learned_effect(data, name, params):
    model = get_algorithm(name, **params).fit(data)
    baseline = model.predict(["mean", 0.5])
    changed = what_if.forecast(model, data, scenario(**PROMOTE_TOYS), ["mean", 0.5])
    lift = (changed["mean"] - baseline["mean"]).to_numpy().reshape(4, data.horizon).mean(axis=1)
    assert 15 < lift[0] < 45 and 15 < lift[1] < 45, (name, lift)  # the data's promotion effect is 30
    np.testing.assert_allclose(lift[2:], 0.0, atol=1e-9)  # food items keep their baseline exactly
    np.testing.assert_allclose(model.predict(["mean"])["mean"], baseline["mean"])  # the model is unchanged
    table = what_if.comparison(baseline, changed, ["item_id"])
    assert list(table.columns[:4]) == ["item_id", "mean_baseline", "mean_scenario", "mean_change"]
    assert (table.set_index("item_id").loc[["c", "d"], "mean_change"] == 0).all()


def test_arima_keeps_its_parameters_not_statsmodels_results_and_forecasts_a_scenario_alike(data, monkeypatch):
    """A series with regressors keeps what a what-if needs to forecast again (order, coefficients,
    statsmodels' parameters), not SARIMAX's results (megabytes a series: a 400-series daily group's
    model reached 6.3 GB): filtering again from the parameters forecasts what the results did."""
    import pickle

    from pipelines.forecast import arima

    lean = get_algorithm("ARIMA").fit(data)
    fits = [s["fit"] for s in lean.states_ if s and "fit" in s]
    assert fits and all(f.result is None for f in fits) and any(f.method == "ML" for f in fits)
    assert len(pickle.dumps(lean.fitted_part())) < 20_000 * len(lean.states_)
    monkeypatch.setattr(arima.Fit, "lean", lambda self: self)  # as before: the results kept
    full = get_algorithm("ARIMA").fit(data)
    assert all(s["fit"].result is not None for s in full.states_ if s and "fit" in s and s["fit"].method == "ML")
    promote = scenario(**PROMOTE_TOYS)
    np.testing.assert_allclose(what_if.forecast(lean, data, promote, ["mean", 0.1, 0.9])[["mean", "p10", "p90"]],
                               what_if.forecast(full, data, promote, ["mean", 0.1, 0.9])[["mean", "p10", "p90"]],
                               rtol=1e-9)  # fmt: skip


def test_timestamp_conditions_and_a_replacement_file(data, tmp_path):
    model = get_algorithm("ARIMA").fit(data)
    baseline = model.predict(["mean"])
    stamps = data.future_periods()
    late = {
        "transformations": [
            {
                "action": {"attribute": "promotion", "operation": "ADD", "value": 1},
                "conditions": [{"attribute": "timestamp", "value": str(stamps[3].date()), "condition": "GREATER_THAN"}],
            }
        ]
    }
    changed = what_if.forecast(model, data, scenario(**late), ["mean"])
    lift = (changed["mean"] - baseline["mean"]).to_numpy().reshape(4, data.horizon)
    np.testing.assert_allclose(lift[:, :4], 0.0, atol=1e-9)
    assert (lift[:, 4:] > 15).all()
    path = tmp_path / "promo.csv"
    pd.DataFrame({"item_id": "d", "timestamp": stamps[:2].strftime("%Y-%m-%d"), "promotion": 1.0}).to_csv(
        path, index=False
    )
    replaced = what_if.forecast(model, data, scenario(replacement={"path": str(path)}), ["mean"])
    lift = (replaced["mean"] - baseline["mean"]).to_numpy().reshape(4, data.horizon)
    assert (lift[3, :2] > 15).all() and np.allclose(lift[3, 2:], 0) and np.allclose(lift[:3], 0)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"item_id": ["d"], "when": ["2024-07-20"], "promotion": [1]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=r"replacement .*bad.csv: expected the related time series' columns"):
        what_if.forecast(model, data, scenario(replacement={"path": str(bad)}), ["mean"])


def test_bad_scenarios_are_refused_naming_the_key():
    with pytest.raises(ValueError, match="either transformations or a replacement"):
        scenario()
    with pytest.raises(ValueError, match="DIVIDE by 0"):
        scenario(transformations=[{"action": {"attribute": "price", "operation": "DIVIDE", "value": 0}}])
    with pytest.raises(ValueError, match="operation"):
        scenario(transformations=[{"action": {"attribute": "price", "operation": "POWER", "value": 2}}])
    good = scenario(**PROMOTE_TOYS)
    with pytest.raises(ValueError, match=r"what_if s.transformations.0.action.attribute: 'price' is not a related"):
        what_if.check([scenario(transformations=[{"action": {"attribute": "price", "operation": "ADD", "value": 1}}])],
                      ["promotion"], {"category", "item_id"})  # fmt: skip
    with pytest.raises(ValueError, match=r"conditions.0.attribute: 'category' is neither"):
        what_if.check([good], ["promotion"], {"item_id"})
    with pytest.raises(ValueError, match="unique"):
        what_if.check([good, good], ["promotion"], {"category", "item_id"})
    what_if.check([good], ["promotion"], {"category", "item_id"})
    assert AutoPredictor  # imported for the parametrized case


def test_the_dag_steps_publish_each_scenario_and_the_impact_scores_beside_the_baseline(tmp_path):
    import yaml

    from pipelines.errors import SettingsError
    from pipelines.example_data import RETAIL_SETTINGS, retail
    from pipelines.forecast import workflow
    from pipelines.preparation import steps
    from pipelines.settings import load_group

    folder = tmp_path / "retail_demo"
    folder.mkdir()
    frames = retail(items=6, stores=1, days=200, horizon=14, new_items=1)
    for name, frame in frames.items():
        frame.to_csv(folder / name, index=False)
    category = frames["items.csv"].set_index("item_id")["category"]
    path = tmp_path / "groups.d" / "retail_demo.yaml"
    path.parent.mkdir()
    raw = yaml.safe_load(RETAIL_SETTINGS.format(horizon=14))
    raw["training"] = {"plots": 0}
    raw["explainability"] = True
    promote = {
        "action": {"attribute": "promotion", "operation": "ADD", "value": 1},
        "conditions": [{"attribute": "category", "value": category["item_000"], "condition": "EQUALS"}],
    }
    raw["what_if"] = [
        {"name": "promo_category", "transformations": [promote]},
        {"name": "new_prices", "replacement": {"path": "prices.csv"}},
    ]
    prices = {"item_id": ["item_001"], "store_id": ["store_01"], "timestamp": ["2023-07-21"], "price": [0.5]}
    pd.DataFrame(prices).to_csv(path.parent / "prices.csv", index=False)
    path.write_text(yaml.safe_dump(raw))
    group = load_group(path)
    assert group.what_if[1].replacement.path == str(path.parent / "prices.csv")  # relative to the settings file
    as_of, overrides = "2023-07-19", {"algorithms": ["ARIMA"]}
    steps.import_data(group, as_of)
    candidates = [workflow.hpo_train(group, as_of, "ARIMA", overrides)]
    selection = workflow.backtest(group, as_of, candidates, overrides)
    forecasted = workflow.forecast(group, as_of, selection, overrides)
    out = workflow.publish(group, as_of, selection, forecasted, overrides)["path"]
    baseline = pd.read_parquet(f"{out}/forecast.parquet")
    promo = pd.read_parquet(f"{out}/what_if/promo_category/forecast.parquet")
    assert list(promo.columns) == list(baseline.columns) and len(promo) == len(baseline)
    table = pd.read_csv(f"{out}/what_if/promo_category/comparison.csv").dropna(subset=["store_id"])
    matched = table["item_id"].map(category).eq(category["item_000"]).to_numpy()
    assert (table.loc[~matched, "p50_change"] == 0).all()  # only the items the condition matches change
    assert (table.loc[matched, "p50_change"] > 0).all()  # a promotion lifts their demand
    replaced = pd.read_parquet(f"{out}/what_if/new_prices/forecast.parquet")
    moved = ((replaced["p50"] - baseline["p50"]).abs() > 1e-9) & baseline["store_id"].notna()
    assert set(replaced.loc[moved, "item_id"].astype(str)) == {"item_001"}
    assert replaced.loc[moved, "date"].tolist() == [pd.Timestamp("2023-07-21")]
    scores = pd.read_csv(f"{out}/explainability/impact_scores.csv")
    assert set(scores["attribute"]) == {"price", "promotion", "holiday_US", "category", "brand"}
    assert scores.groupby("item_id")["impact_score"].apply(lambda v: v.abs().sum()).round(6).isin([0.0, 1.0]).all()
    overall = pd.read_csv(f"{out}/explainability/impact_scores_global.csv")
    assert overall["attribute"].iloc[0] in {"price", "promotion"}  # what the data's demand follows
    assert (overall.set_index("attribute").loc[["category", "brand"], "impact_score"] == 0).all()  # ARIMA reads none
    assert len(pd.read_csv(f"{out}/explainability/impact_scores_by_time.csv")) == len(scores) * 14  # per day
    for png in (
        "what_if/promo_category/comparison.png",
        "what_if/new_prices/comparison.png",
        "explainability/impact_scores.png",
    ):  # readable without a server
        picture = Path(out, png).read_bytes()
        assert picture.startswith(b"\x89PNG\r\n\x1a\n") and len(picture) > 5000, png
    raw["what_if"] = [{"name": "bad", "transformations": [{"action": {**promote["action"], "attribute": "colour"}}]}]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SettingsError, match=r"what_if bad.transformations.0.action.attribute: 'colour' is not"):
        load_group(path)
