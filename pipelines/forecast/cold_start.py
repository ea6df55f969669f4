"""Cold-start items: forecasts for items that have item metadata but no target history.

Amazon Forecast's rule: an item is cold-start when it appears in ITEM_METADATA and has no rows in
the target time series; it is forecast from its metadata, which Forecast does only with its
global models (DeepAR+, CNN-QR). Here those models forecast such items from their metadata
embeddings; for every other predictor ``with_cold_start`` borrows: a cold-start item gets the
average, period by period and forecast type by forecast type, of the forecasts of the series
whose items share the most metadata values with it (every series when none shares one).
Averaging quantiles level by level (Vincentization) keeps them ordered. Key columns other than
the item's (forecast dimensions such as a store) stay empty for such items, as the global models
leave them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.forecast.data import ForecastData
from pipelines.forecast.global_model import append_cold_start


def cold_start_items(data: ForecastData) -> tuple[str | None, pd.Index]:
    """The metadata's item column and the items it lists that have no series (empty when none)."""
    meta = data.item_metadata
    key = next((k for k in data.series_keys if meta is not None and k in meta.columns), None)
    if key is None:
        return None, pd.Index([])
    items = pd.Index(meta[key].astype(str).unique())
    return key, items[~items.isin(pd.Index(data.keys[key].astype(str).unique()))]


def with_cold_start(model, data: ForecastData, quantiles, predicted: pd.DataFrame | None = None) -> pd.DataFrame:
    """``model.predict(quantiles)`` (or ``predicted``, that frame made already), plus borrowed forecasts
    for the cold-start items it left out."""
    frame = model.predict(quantiles) if predicted is None else predicted
    key, cold = cold_start_items(data)
    if key is None:
        return frame
    missing = cold[~cold.isin(pd.Index(frame[key].astype(str).unique()))]
    if not len(missing):
        return frame
    return append_cold_start(frame, borrowed(data, frame, key, missing), data.series_keys)


def borrowed(data: ForecastData, frame: pd.DataFrame, key: str, items: pd.Index) -> pd.DataFrame:
    """Forecasts for ``items`` from the series of the items most like them in the metadata."""
    meta = data.item_metadata.drop_duplicates(key, keep="last")
    meta = meta.set_index(pd.Index(meta[key].astype(str), name=None))
    fields = [c for c in meta.columns if c != key and not pd.api.types.is_numeric_dtype(meta[c])]
    values = [c for c in frame.columns if c not in (*data.series_keys, "timestamp")]
    forecast_items = frame[key].astype(str)
    warm = pd.Index(forecast_items.unique())
    known = meta.reindex(warm)
    rows = []
    for item in items:
        same = np.zeros(len(warm))
        for field in fields:
            mine = meta.at[item, field] if item in meta.index else None
            if mine is not None and not pd.isna(mine):
                same += (known[field].astype(object) == mine).to_numpy()
        like = warm[same == same.max()] if len(warm) else warm
        part = frame[forecast_items.isin(like)]
        average = part.groupby("timestamp", sort=True)[values].mean().reset_index()
        rows.append(average.assign(**{k: (item if k == key else pd.NA) for k in data.series_keys}))
    return pd.concat(rows, ignore_index=True)[[*data.series_keys, "timestamp", *values]]
