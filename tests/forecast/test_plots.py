"""Plots: a PNG per item with safe, stable names, and a summary sheet chosen by a metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines.forecast.backtest import backtest
from pipelines.forecast.base import get_algorithm
from pipelines.forecast.data import ForecastData
from pipelines.forecast.plots import item_labels, plot_forecasts, plot_summary, safe_name
from tests.forecast.conftest import generated_series

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IDS = ["plain", "a/b", "a_b", "../etc/passwd", "Straße 5 ☃", "$x$"]


@pytest.fixture(scope="module")
def forecast_and_backtest():
    series = [generated_series(kind, 72, seed) for seed, kind in enumerate(["seasonal", "trending"] * 3)]
    data = ForecastData.from_arrays(series, freq="1M", horizon=12, end="2024-12-01", ids=IDS)
    model = get_algorithm("SeasonalNaive")
    return data, model.fit(data).predict([0.1, 0.5, 0.9]), backtest(model, data, windows=2)


def is_png(path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5_000
    with Image.open(path) as image:
        return image.size


def test_file_names_are_safe_distinct_and_stable():
    names = [safe_name(i) for i in IDS]
    assert len(set(names)) == len(IDS)
    assert all(n.replace("-", "").replace("_", "").replace(".", "").isalnum() for n in names)
    assert names[0].startswith("plain-") and names[3].startswith("etc_passwd-")
    assert safe_name("a/b") == names[1]  # the same item, the same file, run after run
    two_keys = pd.DataFrame({"item_id": ["x"], "location": ["berlin"]})
    assert item_labels(two_keys) == ["item_id=x | location=berlin"]


def test_one_png_per_item_with_history_band_and_backtest(forecast_and_backtest, tmp_path):
    data, forecast, result = forecast_and_backtest
    paths = plot_forecasts(data, forecast, tmp_path / "items", backtest=result.export, history=36)
    assert list(paths) == IDS
    assert sorted(p.name for p in paths.values()) == sorted(f"{safe_name(i)}.png" for i in IDS)
    assert all(p.parent == tmp_path / "items" for p in paths.values())
    assert not list((tmp_path / "items").glob(".*"))  # no temporary files left behind
    assert is_png(paths["a/b"]) == (900, 360)
    again = plot_forecasts(data, forecast, tmp_path / "items", items=["a/b"])
    assert again == {"a/b": paths["a/b"]}
    assert len(plot_forecasts(data, forecast, tmp_path / "few", limit=2)) == 2


def test_summary_sheet_shows_the_best_and_worst_items_by_a_metric(forecast_and_backtest, tmp_path):
    data, forecast, result = forecast_and_backtest
    path = plot_summary(data, forecast, tmp_path, metrics=result.items, metric="WAPE", top=2, bottom=2, columns=2)
    assert path == tmp_path / "summary.png"
    assert is_png(path) == (840, 520)
    first = plot_summary(data, forecast, tmp_path / "first.png", first=3, backtest=result.export)
    assert is_png(first) == (1260, 260)
    with pytest.raises(ValueError, match="metric"):
        plot_summary(data, forecast, tmp_path, metrics=result.items, metric="sMAPE")


def test_a_forecast_without_quantile_band_still_plots(forecast_and_backtest, tmp_path):
    data, forecast, _ = forecast_and_backtest
    only_mean = forecast[["item_id", "timestamp"]].assign(mean=np.asarray(forecast["p50"]))
    paths = plot_forecasts(data, only_mean, tmp_path, limit=1)
    is_png(next(iter(paths.values())))
