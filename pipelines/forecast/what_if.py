"""What-if analysis (Forecast's CreateWhatIfAnalysis / CreateWhatIfForecast) on the served model.

A scenario changes the related time series over the forecast horizon and forecasts again with
the same fitted model: "what if every electronics item is on promotion, or prices drop 10 %?".
As in Forecast, a scenario is either

- ``transformations`` (TimeSeriesTransformations): an ``action`` (ADD, SUBTRACT, MULTIPLY or
  DIVIDE a related feature by a value) applied where all its ``conditions`` hold (EQUALS,
  NOT_EQUALS, LESS_THAN, GREATER_THAN on an item metadata field, a series key or ``timestamp``);
- or a ``replacement`` (TimeSeriesReplacementsDataSource): a file in the related time series'
  layout whose values replace the future related values it covers.

Only the horizon changes: the history is what happened. Series that no condition matches keep
their baseline forecast exactly. The settings models below import only pydantic (group settings,
and so DAG files, load them); ``scenario_data`` and ``forecast`` load pandas when they run.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

OPERATIONS = ("ADD", "SUBTRACT", "MULTIPLY", "DIVIDE")
CONDITIONS = ("EQUALS", "NOT_EQUALS", "LESS_THAN", "GREATER_THAN")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Action(_Strict):
    attribute: str
    operation: Literal[OPERATIONS]  # type: ignore[valid-type]
    value: float

    @model_validator(mode="after")
    def _finite(self) -> Action:
        if self.operation == "DIVIDE" and self.value == 0:
            raise ValueError("action: DIVIDE by 0")
        if self.value != self.value or abs(self.value) == float("inf"):
            raise ValueError(f"action: value {self.value} is not a finite number")
        return self


class Condition(_Strict):
    attribute: str
    value: str
    condition: Literal[CONDITIONS]  # type: ignore[valid-type]


class Transformation(_Strict):
    action: Action
    conditions: list[Condition] = Field(default_factory=list)


class Replacement(_Strict):
    path: str  # relative to the settings file, or a URL


class Scenario(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z][a-zA-Z0-9_\-]{0,62}$")
    transformations: list[Transformation] = Field(default_factory=list)
    replacement: Replacement | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Scenario:
        if bool(self.transformations) == (self.replacement is not None):
            raise ValueError(f"what_if {self.name}: give either transformations or a replacement")
        return self


def check(scenarios: list[Scenario], features: list[str], condition_fields: set[str]) -> None:
    """Each action names a related feature and each condition a metadata field, series key or
    ``timestamp``; names are unique. ValueError naming the scenario and the key."""
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ValueError(f"what_if: scenario names must be unique, got {names}")
    for s in scenarios:
        if not features:
            raise ValueError(f"what_if {s.name}: the group has no RELATED_TIME_SERIES to change")
        for k, t in enumerate(s.transformations):
            if t.action.attribute not in features:
                raise ValueError(
                    f"what_if {s.name}.transformations.{k}.action.attribute: {t.action.attribute!r} is not a "
                    f"related time series feature ({', '.join(features)})"
                )
            for j, c in enumerate(t.conditions):
                if c.attribute not in condition_fields | {"timestamp"}:
                    raise ValueError(
                        f"what_if {s.name}.transformations.{k}.conditions.{j}.attribute: {c.attribute!r} is "
                        "neither an item metadata field, a series key nor timestamp "
                        f"({', '.join(sorted(condition_fields))})"
                    )


# -- running a scenario -----------------------------------------------------------------


def scenario_data(data, scenario: Scenario, group=None):
    """``data`` with the scenario's future related values (one related series per target series)."""
    import numpy as np

    if data.related is None:
        raise ValueError(f"what_if {scenario.name}: the data has no related time series")
    related, future = per_series_related(data)
    values, offsets, starts = related.values, related.offsets, related.starts
    if scenario.replacement is not None:
        _replace(data, values, offsets, starts, future, scenario, group)
    for t in scenario.transformations:
        column = related.features.index(t.action.attribute)
        chosen = _matching_series(data, t.conditions)
        for i in np.flatnonzero(chosen):
            positions = future[i][_timestamp_ok(data, future[i], t.conditions)]
            rows = offsets[i] + positions - starts[i]
            values[rows, column] = _operate(values[rows, column], t.action)
    return dataclasses.replace(data, related=related)


def per_series_related(data):
    """The related features as one related series per target series (a copy, free to change), and
    each series' horizon as grid positions."""
    import numpy as np

    from pipelines.forecast.data import RelatedData

    blocks = [data.related_for(i) for i in range(data.n_series)]
    lengths = np.array([len(b) for b in blocks], dtype="int64")
    values = np.concatenate(blocks) if blocks else np.empty((0, len(data.related.features)))
    offsets = np.r_[0, np.cumsum(lengths)].astype("int64")
    starts = np.asarray(data.starts, dtype="int64").copy()
    future = [np.arange(max(data.end, s), data.end + data.horizon) for s in starts]
    index = np.arange(data.n_series, dtype="int64")
    return RelatedData(list(data.related.features), values, offsets, starts, index), future


def forecast(model, data, scenario: Scenario, quantiles, group=None):
    """The fitted ``model``'s forecast of every item (cold-start ones too) under ``scenario``."""
    from pipelines.forecast.cold_start import with_cold_start

    changed = scenario_data(data, scenario, group)
    return with_cold_start(model.with_data(changed), changed, quantiles)


def comparison(baseline, scenario, keys: list[str]):
    """Per item: each forecast type's total over the horizon, baseline and scenario, and the change."""
    import pandas as pd

    values = [c for c in baseline.columns if c not in (*keys, "date", "timestamp")]
    totals = {
        label: frame.groupby(keys, dropna=False, observed=True)[values].sum()
        for label, frame in (("baseline", baseline), ("scenario", scenario))
    }
    out = pd.DataFrame(index=totals["baseline"].index)
    for column in values:
        out[f"{column}_baseline"] = totals["baseline"][column]
        out[f"{column}_scenario"] = totals["scenario"][column].reindex(out.index)
        out[f"{column}_change"] = out[f"{column}_scenario"] - out[f"{column}_baseline"]
    return out.reset_index()


def _operate(values, action: Action):
    op = action.operation
    if op == "ADD":
        return values + action.value
    if op == "SUBTRACT":
        return values - action.value
    if op == "MULTIPLY":
        return values * action.value
    return values / action.value


def _compare(left, right: str, condition: str):
    """Left (an array) against the condition's value, numerically where both sides are numbers."""
    import numpy as np
    import pandas as pd

    text = pd.Series(left).astype("string")
    numbers, wanted = pd.to_numeric(text, errors="coerce"), pd.to_numeric(pd.Series([right]), errors="coerce")[0]
    if condition in ("LESS_THAN", "GREATER_THAN"):
        if pd.isna(wanted):
            ordered, value = text, right
        else:
            ordered, value = numbers, wanted
        result = (ordered < value) if condition == "LESS_THAN" else (ordered > value)
    else:
        equal = (numbers == wanted) if not pd.isna(wanted) and numbers.notna().all() else (text == right)
        result = equal if condition == "EQUALS" else ~equal
    return np.asarray(result.fillna(False), dtype=bool)


def _matching_series(data, conditions: list[Condition]):
    """Which series every non-timestamp condition holds for (metadata fields through the item key)."""
    import numpy as np
    import pandas as pd

    chosen = np.ones(data.n_series, dtype=bool)
    meta = data.item_metadata
    for c in conditions:
        if c.attribute == "timestamp":
            continue
        if c.attribute in data.keys.columns:
            column = data.keys[c.attribute].astype(str).to_numpy()
        else:
            key = next(k for k in data.series_keys if meta is not None and k in meta.columns)
            unique = meta.drop_duplicates(key, keep="last")
            lookup = pd.Series(unique[c.attribute].to_numpy(), index=pd.Index(unique[key].astype(str)))
            column = lookup.reindex(pd.Index(data.keys[key].astype(str))).to_numpy()
        chosen &= _compare(column, c.value, c.condition)
    return chosen


def _timestamp_ok(data, positions, conditions: list[Condition]):
    import numpy as np
    import pandas as pd

    from pipelines.forecast.regressors import full_grid

    ok = np.ones(len(positions), dtype=bool)
    stamps = full_grid(data)[positions]
    for c in conditions:
        if c.attribute == "timestamp":
            wanted = pd.Timestamp(c.value)
            ok &= {
                "EQUALS": stamps == wanted,
                "NOT_EQUALS": stamps != wanted,
                "LESS_THAN": stamps < wanted,
                "GREATER_THAN": stamps > wanted,
            }[c.condition]
    return ok


def _replace(data, values, offsets, starts, future, scenario: Scenario, group) -> None:
    """Future related values from the replacement file, where it has them (keys, timestamp, features)."""
    import numpy as np
    import pandas as pd

    from pipelines.forecast.regressors import full_grid
    from pipelines.preparation.importing import calendar

    path = scenario.replacement.path
    try:
        frame = pd.read_csv(path) if not str(path).endswith(".parquet") else pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"what_if {scenario.name}.replacement.path: cannot read {path}: {exc}") from exc
    features = data.related.features
    keys = [k for k in data.series_keys if k in frame.columns]
    unknown = sorted(set(frame.columns) - {*data.series_keys, "timestamp", *features})
    if "timestamp" not in frame.columns or not keys or unknown:
        raise ValueError(
            f"what_if {scenario.name}.replacement {path}: expected the related time series' columns "
            f"({', '.join([*data.series_keys, 'timestamp', *features])}); missing keys or timestamp, unknown {unknown}"
        )
    grid = full_grid(data)
    stamps = calendar.align(data.freq, pd.to_datetime(frame["timestamp"]), data.boundary)
    position = grid.get_indexer(pd.DatetimeIndex(stamps))
    members: dict[tuple, list[int]] = {}  # a replacement keyed coarser than the series (price per item)
    for i, row in enumerate(data.keys[keys].astype(str).itertuples(index=False, name=None)):
        members.setdefault(row, []).append(i)
    rows = list(frame[keys].astype(str).itertuples(index=False, name=None))
    for column in (c for c in features if c in frame.columns):
        j = features.index(column)
        given = frame[column].to_numpy(dtype="float64", na_value=np.nan)
        for r in np.flatnonzero((position >= data.end) & ~np.isnan(given)):
            for i in members.get(rows[r], []):
                if position[r] >= starts[i]:
                    values[offsets[i] + position[r] - starts[i], j] = given[r]
