"""Explainability (Forecast's CreateExplainability): how much each attribute moves an item's forecast.

Impact scores are exact Shapley values of the mean forecast over the attributes: each related
series attribute (the group's holidays among them), and for the models that read item metadata
(DeepAR+, CNN-QR) each metadata field. A coalition of attributes keeps its values; the others are
set to a reference, their effect removed: a related attribute's future values become the series'
own historical mean (the forecast as if the attribute said nothing unusual over the horizon), a
metadata field becomes unknown. The fitted model forecasts every coalition (``with_data``: no
refitting), so with k attributes that is 2^k forecasts; Shapley's weights then give each
attribute its share of the difference between the full forecast and the all-reference one,
exactly, per item and time point. Exact values are affordable because a group has few
attributes (Forecast allows 13 related features); beyond ``MAX_EXACT`` attributes the scores are
estimated from ``SAMPLED_PERMUTATIONS`` random orderings (Monte Carlo Shapley) instead.

As Forecast, scores are normalised to [-1, 1]: per item (and per item and time point) each
attribute's Shapley value divided by the sum of the absolute values, so the signs say which way
an attribute pushes and the magnitudes sum to 1. An attribute an algorithm does not read gets 0
with a note (``uses`` is False); the global score is the normalised mean absolute value.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd

from pipelines.forecast.data import ForecastData

MAX_EXACT = 8
SAMPLED_PERMUTATIONS = 64


@dataclasses.dataclass
class Attribute:
    name: str
    kind: str  # "related" or "item_metadata"
    index: int  # the related feature's column, or the metadata field's position among the model's


def attributes(model, data: ForecastData) -> tuple[list[Attribute], dict[str, str]]:
    """The attributes to score, and those the model cannot read with the reason."""
    found, unused = [], {}
    related = data.related.features if data.related is not None else []
    reads_related = _reads_related(model)
    for j, name in enumerate(related):
        if reads_related:
            found.append(Attribute(name, "related", j))
        else:
            unused[name] = f"{model.name} does not use related time series"
    fields = _metadata_fields(model)
    if data.item_metadata is not None:
        for name in data.item_metadata.columns:
            if name in data.series_keys:
                continue
            if name in fields:
                found.append(Attribute(name, "item_metadata", fields.index(name)))
            elif name not in unused:
                unused[name] = f"{model.name} does not use this item metadata field"
    return found, unused


def _metadata_fields(model) -> list[str]:
    """The item metadata fields the model reads: a global model's own, the AutoPredictor's candidates'."""
    if hasattr(model, "models_"):
        return list(dict.fromkeys(f for m in model.models_.values() for f in _metadata_fields(m)))
    meta = getattr(model, "metadata_", None)
    return list(meta.fields) if meta is not None else []


def _reads_related(model) -> bool:
    from pipelines.forecast.regressors import WithRegressors

    if hasattr(model, "models_"):  # the AutoPredictor: through any of its candidates
        return any(_reads_related(m) for m in model.models_.values())
    if isinstance(model, WithRegressors):
        return bool(getattr(model, "use_related", True))
    if hasattr(model, "related_stats_"):  # the global models
        return model.related_stats_ is not None and getattr(model, "use_related_data", True) not in (False, "NONE")
    return False


def impact_scores(model, data: ForecastData) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(per item, per item and time point, global) normalised impact scores of every attribute."""
    found, unused = attributes(model, data)
    values = _shapley(model, data, found)  # attribute -> (series, horizon) Shapley values of the mean
    keys = data.keys.iloc[model.active_].reset_index(drop=True) if hasattr(model, "active_") else data.keys
    names = [a.name for a in found] + list(unused)
    zero = np.zeros((len(keys), data.horizon))
    stacked = np.stack([values.get(n, zero) for n in names]) if names else np.zeros((0, len(keys), data.horizon))
    by_time = _normalised(stacked)
    by_item = _normalised(stacked.sum(axis=2))
    rows, timed = [], []
    stamps = data.future_periods()
    for a, name in enumerate(names):
        note = unused.get(name, "")
        rows.append(keys.assign(attribute=name, impact_score=by_item[a], note=note))
        for step, stamp in enumerate(stamps):
            timed.append(keys.assign(timestamp=stamp, attribute=name, impact_score=by_time[a, :, step], note=note))
    total = np.abs(stacked).mean(axis=(1, 2)) if names else np.zeros(0)
    overall = pd.DataFrame(
        {
            "attribute": names,
            "impact_score": total / total.sum() if total.sum() > 0 else total,
            "note": [unused.get(n, "") for n in names],
        }
    )
    empty = pd.DataFrame(columns=[*keys.columns, "attribute", "impact_score", "note"])
    return (
        pd.concat(rows, ignore_index=True) if rows else empty,
        pd.concat(timed, ignore_index=True) if timed else empty,
        overall.sort_values("impact_score", ascending=False, kind="stable").reset_index(drop=True),
    )


def _normalised(values: np.ndarray) -> np.ndarray:
    """Each attribute's value over the sum of the absolute values across attributes (axis 0)."""
    total = np.abs(values).sum(axis=0, keepdims=True)
    return np.divide(values, total, out=np.zeros_like(values), where=total > 0)


def _shapley(model, data: ForecastData, found: list[Attribute]) -> dict[str, np.ndarray]:
    k = len(found)
    if not k:
        return {}
    cache: dict[frozenset, np.ndarray] = {}

    def value(kept: frozenset) -> np.ndarray:
        if kept not in cache:
            cache[kept] = _forecast_mean(model, data, found, kept)
        return cache[kept]

    out = {a.name: np.zeros_like(value(frozenset(range(k)))) for a in found}
    if k <= MAX_EXACT:
        for a in range(k):
            others = [b for b in range(k) if b != a]
            for size in range(k):
                weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
                for coalition in itertools.combinations(others, size):
                    base = frozenset(coalition)
                    out[found[a].name] += weight * (value(base | {a}) - value(base))
        return out
    rng = np.random.default_rng(0)
    for _ in range(SAMPLED_PERMUTATIONS):
        kept: frozenset = frozenset()
        for a in rng.permutation(k):
            grown = kept | {int(a)}
            out[found[a].name] += (value(grown) - value(kept)) / SAMPLED_PERMUTATIONS
            kept = grown
    return out


def _forecast_mean(model, data: ForecastData, found: list[Attribute], kept: frozenset) -> np.ndarray:
    """The mean forecast (series with history, horizon) with the attributes outside ``kept`` at reference."""
    related = [a.index for i, a in enumerate(found) if a.kind == "related" and i not in kept]
    masked = [a.name for i, a in enumerate(found) if a.kind == "item_metadata" and i not in kept]
    view = model.with_data(_reference_related(data, related)) if related or masked else model
    if masked:
        view = _mask_metadata(view, masked)
    _, mean, _, _ = view.predict_arrays(["mean"])
    return mean


def _reference_related(data: ForecastData, columns: list[int]) -> ForecastData:
    """``data`` whose related ``columns`` hold, over the horizon, each series' historical mean."""
    from pipelines.forecast.what_if import per_series_related

    if not columns:
        return data
    related, future = per_series_related(data)
    values = related.values.copy()
    for i in range(data.n_series):
        begin = related.offsets[i]
        history = values[begin : begin + data.lengths[i], columns]
        reference = np.nan_to_num(np.nanmean(history, axis=0)) if len(history) else 0.0
        rows = begin + future[i] - related.starts[i]
        values[np.ix_(rows, columns)] = reference
    return dataclasses.replace(data, related=dataclasses.replace(related, values=values))


def _mask_metadata(model, names: list[str]):
    """The model with the metadata fields ``names`` read as unknown for every item: a global model's
    own codes, or each of the AutoPredictor's candidates that reads them."""
    import copy

    view = copy.copy(model)
    if hasattr(model, "models_"):
        view.models_ = {key: _mask_metadata(candidate, names) for key, candidate in model.models_.items()}
        return view
    fields = [i for i, name in enumerate(_metadata_fields(model)) if name in names]
    if not fields:
        return model
    codes = model.design_.codes.copy()
    codes[:, fields] = 0
    view.design_ = dataclasses.replace(model.design_, codes=codes)
    return view
