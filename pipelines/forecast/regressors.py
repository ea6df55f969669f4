"""Related features for the models that regress on them (ARIMA, Prophet): per series, history then horizon.

The base class hands workers only the target values. Models with regressors need more: each
series' related features on its own periods and the horizon's (known into the future, as Amazon
Forecast requires of related time series), and the grid's timestamps. ``WithRegressors`` adds
them to every chunk it cuts; the features are cut per series here, so a worker never sees the
whole dataset's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipelines.forecast.base import Chunk
from pipelines.forecast.data import ForecastData
from pipelines.frequency import Frequency
from pipelines.preparation.importing import calendar


@dataclass
class RegressorChunk(Chunk):
    """A chunk plus, per series, its regressors from its first period to the horizon's end."""

    regressors: list[np.ndarray] = field(default_factory=list)  # per series (periods + horizon, features)
    names: list[str] = field(default_factory=list)
    grid: np.ndarray | None = None  # datetime64 period starts, grid position 0 to the horizon's end
    freq: Frequency | None = None


def full_grid(data: ForecastData) -> pd.DatetimeIndex:
    """Every period of the dataset's grid and the ``horizon`` periods after its end."""
    last = calendar.shift(data.freq, data.periods[-1], data.horizon, data.boundary)
    return calendar.periods(data.freq, data.periods[0], last, data.boundary)


class WithRegressors:
    """Mixin for a ``ForecastAlgorithm``: its chunks are ``RegressorChunk``s.

    ``_grid_regressors`` adds features shared by every series (a holiday indicator), one value per
    grid position; the related time series' numeric features come first, unless the algorithm's
    ``use_related`` is False.
    """

    def _grid_regressors(self, data: ForecastData, grid: pd.DatetimeIndex) -> tuple[list[str], np.ndarray | None]:
        return [], None

    def _chunks(self, size, states):
        data = self.data_
        grid = full_grid(data)
        extra_names, extra = self._grid_regressors(data, grid)
        related = data.related is not None and getattr(self, "use_related", True)
        names = [*(data.related.features if related else []), *extra_names]
        stop = data.end + data.horizon
        for chunk, part in super()._chunks(size, states):
            regressors = []
            for i in chunk.ids:
                x = data.related_for(i) if related else np.empty((stop - data.starts[i], 0))
                if extra is not None:
                    x = np.hstack([x, np.asarray(extra, dtype="float64").reshape(len(grid), -1)[data.starts[i] : stop]])
                regressors.append(x)
            base = {f.name: getattr(chunk, f.name) for f in dataclasses.fields(Chunk)}
            chunk = RegressorChunk(**base, regressors=regressors, names=names, grid=grid.to_numpy(), freq=data.freq)
            yield chunk, part


def usable_regressors(x: np.ndarray, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A series' regressors ready to fit: rows from ``first`` on, gaps filled, useless columns dropped.

    ``first`` is the series' first observed value (``fill_gaps`` drops the ones before it) and
    ``n`` its history's length from there. Gaps are carried forward (then backward at the start):
    a price stays what it was until it changes. Columns never known, or constant over the
    history (nothing to learn from, and collinear with the level), are dropped. Returns the
    matrix (n + horizon, kept) and the kept column numbers.
    """
    x = pd.DataFrame(x[first:]).ffill().bfill().to_numpy(dtype="float64")
    if x.shape[1] == 0:
        return x, np.arange(0)
    history = x[:n]
    keep = np.flatnonzero(~np.isnan(history).any(axis=0) & (np.ptp(history, axis=0) > 0))
    return x[:, keep], keep
