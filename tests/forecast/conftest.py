"""Small generated series with known futures, shared by the forecast tests."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast.data import ForecastData

HISTORY, HORIZON = 120, 12
# Several series of each kind, so that a score is not one lucky draw.
KINDS = ("seasonal",) * 3 + ("trending",) * 3 + ("intermittent",) * 10


def generated_series(kind: str, length: int, seed: int = 0) -> np.ndarray:
    """One monthly series: ``seasonal`` (a yearly cycle), ``trending`` or ``intermittent`` (mostly zeros)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    if kind == "seasonal":
        return 50 + 15 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 2, length)
    if kind == "trending":
        return 20 + 0.8 * t + rng.normal(0, 3, length)
    if kind == "intermittent":
        return rng.poisson(0.3, length) * rng.integers(1, 4, length).astype("float64")
    raise ValueError(kind)


@pytest.fixture(scope="session")
def generated() -> tuple[ForecastData, np.ndarray]:
    """Monthly series of every kind ending 2024-12, and the 12 months that really followed."""
    full = [generated_series(kind, HISTORY + HORIZON, seed) for seed, kind in enumerate(KINDS)]
    ids = [f"{kind}_{i}" for i, kind in enumerate(KINDS)]
    data = ForecastData.from_arrays(
        [s[:HISTORY] for s in full], freq="1M", horizon=HORIZON, end="2024-12-01", ids=ids, non_negative=True
    )
    return data, np.array([s[HISTORY:] for s in full])


def m3_monthly(shared_data, count: int):
    """The first ``count`` M3 monthly series: histories, official test values (``xx``) and horizon."""
    everything = json.loads((shared_data / "forecast" / "m3.json").read_text())
    monthly = [s for s in everything.values() if s["period"][0] == "MONTHLY"][:count]
    histories = [np.asarray(s["x"], dtype="float64") for s in monthly]
    futures = np.array([s["xx"] for s in monthly], dtype="float64")
    return histories, futures, int(monthly[0]["h"][0]), [s["sn"][0] for s in monthly]


def big_and_small_stores() -> ForecastData:
    """Big-store items sell about 200, small-store ones about 10 (a yearly cycle each); the metadata
    also lists a new item of each kind, with no history: what a cold-start forecast must tell apart."""
    rng = np.random.default_rng(2)
    series, ids, kinds = [], [], []
    for n in range(8):
        kind = "big" if n % 2 else "small"
        level = 200.0 if kind == "big" else 10.0
        series.append(level * (1 + 0.3 * np.sin(2 * np.pi * np.arange(48) / 12)) + rng.normal(0, level / 20, 48))
        ids.append(f"item_{n}")
        kinds.append(kind)
    meta = pd.DataFrame({"item_id": [*ids, "new_big", "new_small"], "store": [*kinds, "big", "small"]})
    data = ForecastData.from_arrays(series, freq="1M", horizon=6, end="2024-12-01", ids=ids, non_negative=True)
    return dataclasses.replace(data, item_metadata=meta)
