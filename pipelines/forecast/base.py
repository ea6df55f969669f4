"""One interface for every forecasting algorithm, and the registry that finds them by name.

Like scikit-learn and StatsForecast: hyperparameters are constructor arguments, ``fit(data)``
learns and returns the estimator, learned state lives in attributes ending with ``_``, and
``predict(quantiles)`` returns a frame with the series keys, ``timestamp`` and one column per
forecast type named as Amazon Forecast names them (``p10``, ``p50``, ``p90``, ``mean``).

Local models (one per series) are fitted and forecast in chunks of series, in worker processes
when ``n_jobs > 1``. A worker turns its chunk's sample paths into quantiles before it returns,
so memory holds one chunk's samples at a time, never the whole dataset's.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import math
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import ValidationError

from pipelines.forecast.data import ForecastData
from pipelines.forecast.hyperparameters import Hyperparameters

DEFAULT_QUANTILES = (0.1, 0.5, 0.9)


def forecast_frame(data, ids: np.ndarray, mean: np.ndarray, quant: np.ndarray, quantiles) -> pd.DataFrame:
    """The forecast frame of ``predict_arrays``' arrays: keys, ``timestamp`` and a column per forecast type."""
    types = forecast_types(quantiles)
    h = data.horizon
    frame = data.keys.iloc[np.repeat(ids, h)].reset_index(drop=True)
    frame["timestamp"] = np.tile(data.future_periods().to_numpy(), len(ids))
    levels = sorted(t for t in types if t != "mean")
    for t in types:
        values = mean if t == "mean" else quant[:, :, levels.index(t)]
        frame[column_name(t)] = values.reshape(-1)
    return frame


def forecast_types(types: Iterable[float | str]) -> list[float | str]:
    """Normalise Forecast's ForecastTypes: quantiles 0.01-0.99 (two decimals at most) and ``mean``.

    Accepts 0.1, "0.1", "p10" and "mean"; raises ValueError naming the bad value.
    """
    types, out = list(types), []
    for value in types:
        text = str(value).strip().lower()
        if text == "mean":
            out.append("mean")
            continue
        if text.startswith("p") and text[1:].isdigit():
            text = f"{int(text[1:]) / 100:.2f}"
        try:
            q = float(text)
        except ValueError:
            raise ValueError(f"forecast type {value!r} is neither a quantile nor 'mean'") from None
        if not 0.01 <= q <= 0.99 or abs(q * 100 - round(q * 100)) > 1e-9:
            raise ValueError(f"quantile {value!r}: Forecast takes 0.01 to 0.99 in steps of 0.01")
        out.append(round(q, 2))
    if not out or len(set(out)) != len(out):
        raise ValueError(f"forecast types must be distinct and not empty, got {list(types)}")
    return out


def column_name(forecast_type: float | str) -> str:
    """Forecast's export column for a forecast type: 0.1 -> p10, 0.05 -> p5, mean -> mean."""
    return "mean" if forecast_type == "mean" else f"p{round(float(forecast_type) * 100)}"


@dataclass
class Chunk:
    """What a worker needs for some series: their values and where they sit on the grid."""

    ids: np.ndarray  # series indices in the dataset (seeds derive from them, not from chunking)
    series: list[np.ndarray]
    starts: np.ndarray  # grid position of each series' first value
    end: int  # grid position just after the last value (shared by all series)
    horizon: int
    season_length: int
    grid_features: np.ndarray | None  # one seasonal feature per grid position, history and horizon


class ForecastAlgorithm:
    """Base class: subclasses implement ``_fit_series`` (optional) and ``_forecast_series``."""

    name: str = ""
    fits_per_series = True  # False for models with nothing to learn before forecasting (NPTS)
    # Heavy modules the per-series code imports: loaded up front, once, not in each worker.
    worker_imports: tuple[str, ...] = ()
    # True where ``with_data`` of a fitted model forecasts from a later history of the same series
    # without refitting (the global networks); a local model's fitted state belongs to its history.
    rolls_forward: ClassVar[bool] = False
    # The pydantic model (hyperparameters.py) that declares the hyperparameters, their defaults and
    # the algorithm's limits, where one does: the constructor then takes its fields by keyword,
    # validated by it, and sets them as attributes (see __init_subclass__).
    hyperparameter_model: ClassVar[type[Hyperparameters] | None] = None

    def __init__(self, *, n_jobs: int = 1, chunk_size: int = 64, seed: int = 0, **hyperparameters):
        self.n_jobs = n_jobs
        self.chunk_size = chunk_size
        self.seed = seed
        model = self.hyperparameter_model
        if model is None:
            if hyperparameters:
                raise TypeError(f"{type(self).__name__} takes no hyperparameters {sorted(hyperparameters)}")
            return
        unknown = sorted(set(hyperparameters) - set(model.model_fields))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments {unknown}")
        try:
            values = model.model_validate(hyperparameters)
        except ValidationError as error:
            bad = [f"{'.'.join(map(str, e['loc']))}={e['input']!r} ({e['msg']})" for e in error.errors()]
            raise ValueError(f"{self.name} hyperparameters out of range: {'; '.join(bad)}") from None
        for key in model.model_fields:
            setattr(self, key, getattr(values, key))

    def __init_subclass__(cls, **kwargs):
        """A class that declares ``hyperparameter_model`` gets a constructor whose signature lists the
        model's fields (keyword-only, with their defaults) before its own settings, for get_params,
        the registry and tuning to read."""
        super().__init_subclass__(**kwargs)
        model = vars(cls).get("hyperparameter_model")
        if model is None:
            return
        init = cls.__init__

        def __init__(self, **kwargs):
            init(self, **kwargs)

        fields = [
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=field.default, annotation=field.annotation)
            for key, field in model.model_fields.items()
        ]
        settings = [
            p
            for p in inspect.signature(init).parameters.values()
            if p.kind == p.KEYWORD_ONLY and p.name not in model.model_fields
        ]
        self_ = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        __init__.__signature__ = inspect.Signature([self_, *fields, *settings])
        __init__.__doc__, __init__.__qualname__ = init.__doc__, f"{cls.__qualname__}.__init__"
        cls.__init__ = __init__

    # -- scikit-learn conventions ----------------------------------------------------------

    def get_params(self) -> dict:
        names = [
            p.name
            for cls in type(self).__mro__
            if "__init__" in vars(cls) and cls is not object
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        return {name: getattr(self, name) for name in dict.fromkeys(names)}

    def clone(self) -> ForecastAlgorithm:
        """A new, unfitted estimator with the same hyperparameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- the interface ---------------------------------------------------------------------

    def fit(self, data: ForecastData, series: np.ndarray | None = None) -> ForecastAlgorithm:
        """Learn each series' model from ``data`` (every series with at least one visible period).

        ``series`` (ids into ``data``) restricts the fit, and so the forecasts, to those series: a
        shard of a run mapped over workers. Ids stay those of ``data``, so each series draws the
        same random numbers as in a fit of every series (its generator is seeded by its id).
        """
        self.data_ = data
        self.active_ = np.flatnonzero(data.lengths > 0)
        if series is not None:
            self.active_ = np.intersect1d(self.active_, np.asarray(series, dtype="int64"))
        self.states_ = [None] * len(self.active_)
        if self.fits_per_series:
            self.states_ = [s for part in self._map("_fit_chunk", self.states_) for s in part]
        return self

    def fitted_part(self) -> dict:
        """What a fit of some series learned (their ids and per-series states), without the data."""
        return {"ids": self.active_, "states": self.states_}

    def from_parts(self, data: ForecastData, parts: Sequence[dict]) -> ForecastAlgorithm:
        """This (unfitted) estimator as fitted on ``data`` from the parts that fits of its shards of
        series learned (``fitted_part``): the same model one fit of every series gives."""
        ids = np.concatenate([np.asarray(p["ids"], dtype="int64") for p in parts])
        states = [s for p in parts for s in p["states"]]
        order = np.argsort(ids, kind="stable")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("the fitted parts overlap: a series was fitted by two shards")
        self.data_, self.active_, self.states_ = data, ids[order], [states[i] for i in order]
        return self

    def with_data(self, data: ForecastData) -> ForecastAlgorithm:
        """The fitted model forecasting from ``data``: the same history with other future related
        values (a what-if scenario). Nothing is refitted; the original model is left as it was."""
        if not hasattr(self, "data_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(data) first")
        other = copy.copy(self)
        other.data_ = data
        return other

    def predict(self, quantiles: Sequence[float | str] = DEFAULT_QUANTILES) -> pd.DataFrame:
        """Forecasts for every series with history: keys, ``timestamp`` and a column per forecast type."""
        ids, mean, quant, types = self.predict_arrays(quantiles)
        return forecast_frame(self.data_, ids, mean, quant, types)

    def predict_arrays(self, quantiles: Sequence[float | str] = DEFAULT_QUANTILES):
        """(series ids, mean (n, h), quantiles (n, h, k) in ascending level order, forecast types)."""
        if not hasattr(self, "data_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(data) first")
        types = forecast_types(quantiles)
        levels = np.array(sorted(t for t in types if t != "mean"), dtype="float64")
        parts = self._map("_forecast_chunk", self.states_, levels)
        h = self.data_.horizon
        mean = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, h))
        quant = np.concatenate([p[1] for p in parts]) if parts else np.empty((0, h, len(levels)))
        if self.data_.non_negative:
            np.maximum(mean, 0.0, out=mean)
            np.maximum(quant, 0.0, out=quant)
        quant.sort(axis=2)  # no quantile crossing, whatever the model did
        return self.active_, mean, quant, types

    # -- per chunk (runs in workers) -------------------------------------------------------

    def _fit_chunk(self, chunk: Chunk, states: list) -> list:
        return [None if np.isnan(y).all() else self._fit_series(y, chunk) for y in chunk.series]

    def _forecast_chunk(self, chunk: Chunk, states: list, levels: np.ndarray):
        h, k = chunk.horizon, len(levels)
        mean = np.full((len(chunk.series), h), np.nan)
        quant = np.full((len(chunk.series), h, k), np.nan)
        for j, y in enumerate(chunk.series):
            if np.isnan(y).all():
                continue
            rng = np.random.default_rng([self.seed, int(chunk.ids[j])])
            mean[j], quant[j] = self._forecast_series(y, states[j], chunk, j, levels, rng)
        return mean, quant

    def _fit_series(self, y: np.ndarray, chunk: Chunk):
        return None

    def _forecast_series(self, y, state, chunk: Chunk, j: int, levels: np.ndarray, rng: np.random.Generator):
        """(mean (h,), quantiles (h, len(levels))) for one series."""
        raise NotImplementedError

    def _grid_features(self, data: ForecastData) -> np.ndarray | None:
        return None

    def _map(self, method: str, states: list, *args) -> list:
        """Run ``method`` over chunks of the active series, in worker processes when n_jobs > 1.

        Chunks are cut as they are needed and at most two per worker wait in the queue, so the
        series are never all copied out at once.
        """
        ids = self.active_
        jobs = (os.cpu_count() or 1) if self.n_jobs in (-1, None) else max(1, int(self.n_jobs))
        size = max(1, min(self.chunk_size, math.ceil(len(ids) / (jobs * 4))))
        tasks = self._chunks(size, states)
        for module in self.worker_imports:  # loaded before BLAS is limited (it limits loaded libraries)
            importlib.import_module(module)  # and before workers fork (so each need not import it)
        if jobs == 1 or len(ids) <= size:
            with single_blas_thread():
                return [getattr(self, method)(chunk, part, *args) for chunk, part in tasks]
        worker = self.clone()  # hyperparameters only: the data goes chunk by chunk
        results, pending = [], deque()
        workers = min(jobs, math.ceil(len(ids) / size))
        with ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(self.worker_imports,)) as pool:
            for chunk, part in tasks:
                pending.append(pool.submit(_run, worker, method, chunk, part, *args))
                if len(pending) >= 2 * jobs:
                    results.append(pending.popleft().result())
            results.extend(future.result() for future in pending)
        return results

    def _chunks(self, size: int, states: list) -> Iterator[tuple[Chunk, list]]:
        data, ids = self.data_, self.active_
        features = self._grid_features(data)
        for first in range(0, len(ids), size):
            part = ids[first : first + size]
            chunk = Chunk(
                ids=part,
                series=[data.series(i) for i in part],  # views; pickling copies only these values
                starts=data.starts[part],
                end=data.end,
                horizon=data.horizon,
                season_length=data.season_length,
                grid_features=features,
            )
            yield chunk, states[first : first + size]


def _run(algorithm: ForecastAlgorithm, method: str, *args):
    return getattr(algorithm, method)(*args)


def single_blas_thread():
    """Keep BLAS to one thread while series are fitted one by one.

    The per-series optimisers call BLAS on vectors of a handful of numbers; OpenBLAS's threads
    then cost more than they do (fitting ETS took 1.7 times as long with them on 2 cores), and
    in worker processes they fight the other workers for the cores. threadpoolctl switches them
    off at run time, which environment variables cannot once numpy is loaded.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not installed: run with whatever threads BLAS has
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _start_worker(modules: tuple[str, ...]) -> None:
    """Load the heavy modules (already there when forked; not when spawned), then limit BLAS for good."""
    for module in modules:
        importlib.import_module(module)
    single_blas_thread().__enter__()


# -- turning distributions into quantiles ------------------------------------------------


def from_samples(paths: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and quantiles of sample paths (samples, h).

    A quantile is the sample of rank round((n - 1) * q), as GluonTS's SampleForecast takes it: a
    value that was drawn, so forecasts of counts stay counts.
    """
    ranks = np.round((len(paths) - 1) * np.asarray(levels)).astype(int)
    return paths.mean(axis=0), np.sort(paths, axis=0)[ranks].T


def from_normal(mean: np.ndarray, sd: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.stats import norm

    return mean, mean[:, None] + np.asarray(sd)[:, None] * norm.ppf(levels)[None, :]


def fill_gaps(y: np.ndarray) -> np.ndarray:
    """Leading gaps dropped, inner gaps interpolated, trailing gaps carried forward.

    Filling on import may leave NaN (``nan`` filling); models other than NPTS need whole series.
    """
    have = ~np.isnan(y)
    if have.all():
        return y
    first = int(np.argmax(have))
    y = y[first:]
    have = have[first:]
    idx = np.arange(len(y))
    return np.interp(idx, idx[have], y[have])


# -- the registry --------------------------------------------------------------------------

# Filled by the algorithm modules as they load. Every lookup loads the built-in modules first, so
# an algorithm is found whichever module an entry point (a DAG task, the CLI, a test) imported.
ALGORITHMS: dict[str, type[ForecastAlgorithm]] = {}
BUILTIN_MODULES = (
    "pipelines.forecast.naive",
    "pipelines.forecast.ets",
    "pipelines.forecast.theta",
    "pipelines.forecast.arima",
    "pipelines.forecast.npts",
    "pipelines.forecast.prophet_model",
    "pipelines.forecast.deepar",
    "pipelines.forecast.cnn_qr",
    "pipelines.forecast.auto_predictor",
)


def register(cls: type[ForecastAlgorithm]) -> type[ForecastAlgorithm]:
    ALGORITHMS[cls.name] = cls
    return cls


def algorithm_class(name: str) -> type[ForecastAlgorithm]:
    """The class of an algorithm by its Forecast name (``ETS``, ``arn:aws:forecast:::algorithm/ETS``)."""
    for module in BUILTIN_MODULES:  # cheap after the first call: imports are cached
        importlib.import_module(module)
    key = name.rsplit("/", 1)[-1]
    found = ALGORITHMS.get(key) or next((c for n, c in ALGORITHMS.items() if n.lower() == key.lower()), None)
    if found is None:
        raise ValueError(f"unknown algorithm {name!r}; known: {sorted(ALGORITHMS)}")
    return found


def get_algorithm(name: str, **params) -> ForecastAlgorithm:
    """An unfitted algorithm by its Forecast name, with ``params`` as its hyperparameters."""
    return algorithm_class(name)(**params)
