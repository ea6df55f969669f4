"""Prophet: a piecewise-linear trend plus Fourier seasonalities, holidays and regressors, fitted per series.

Amazon Forecast's Prophet is Facebook's ``prophet`` package behind Forecast's interface; so is
this one, with:

- seasonalities switched by frequency: daily for data finer than a day, weekly for data finer
  than a week, yearly for data finer than a year, each only once the history covers two cycles
  (Prophet's own rule), with no more Fourier terms than the periods of a cycle can carry; an
  explicit True, False or Fourier order overrides;
- the holidays of ``country`` (Forecast's holidays supplementary feature, from holidays.py): one
  Prophet holiday effect per holiday for daily and finer data; for weekly and monthly data, where
  a holiday is one day of many in a period, a holiday-period indicator regressor instead;
- related time series as extra regressors, known into the future;
- quantiles from ``num_samples`` draws of Prophet's predictive distribution (trend changes and
  noise), the mean from Prophet's ``yhat``. The draws use numpy's global generator, which Prophet
  offers no way round: it is seeded per series and restored afterwards, so forecasts repeat.

A fit is a CmdStan optimisation in a subprocess, about 0.1 s however short the series: use
``n_jobs`` for many series. CmdStan's and Prophet's INFO logging is switched off.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pipelines.forecast.base import ForecastAlgorithm, from_normal, from_samples, register
from pipelines.forecast.data import ForecastData
from pipelines.forecast.holidays import holiday_dates, holiday_indicator
from pipelines.forecast.hyperparameters import ProphetParams
from pipelines.forecast.regressors import WithRegressors, usable_regressors
from pipelines.frequency import Frequency

CYCLES = {"yearly": pd.Timedelta(days=365.25), "weekly": pd.Timedelta(days=7), "daily": pd.Timedelta(days=1)}
FOURIER_ORDERS = {"yearly": 10, "weekly": 3, "daily": 4}  # Prophet's defaults


def load_prophet():
    """Prophet's class, its loggers quietened (plotly's absence is no error here: plots use matplotlib)."""
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)
    from cmdstanpy.utils import get_logger
    from prophet import Prophet

    get_logger().setLevel(logging.WARNING)  # "Chain [1] start processing" on every fit otherwise
    logging.getLogger("prophet").setLevel(logging.WARNING)
    return Prophet


def seasonalities(freq: Frequency, span: pd.Timedelta, yearly="auto", weekly="auto", daily="auto") -> dict:
    """Prophet's seasonality arguments for a history of ``freq`` data covering ``span``.

    "auto" switches a cycle off when a period is as long as it or the history covers less than
    two, and otherwise caps its Fourier order at what the periods in a cycle can show (a harmonic
    below the Nyquist frequency): 5 for the year of monthly data, where Prophet's 10 would fit
    noise (mean MASE 0.81 with 5, 0.90 with 10 on 100 M3 monthly series).
    """
    shortest, longest = freq.nominal_range()
    period = (pd.Timedelta(shortest) + pd.Timedelta(longest)) / 2
    out = {}
    for name, given in (("yearly", yearly), ("weekly", weekly), ("daily", daily)):
        if given == "auto":
            per_cycle = int(CYCLES[name] / period)
            given = min(FOURIER_ORDERS[name], (per_cycle - 1) // 2) if span >= 2 * CYCLES[name] else 0
            given = given if given > 0 else False
        out[f"{name}_seasonality"] = given
    return out


def daily_holidays(freq: Frequency) -> bool:
    """Holidays as Prophet's own day effects (daily and finer data), or as a period indicator (coarser)."""
    return freq.unit in ("min", "H", "D")


@register
class Prophet(WithRegressors, ForecastAlgorithm):
    """Prophet per series; ``country`` adds its holidays, related features are regressors."""

    name = "Prophet"

    hyperparameter_model = ProphetParams

    def fit(self, data: ForecastData, series=None) -> Prophet:
        load_prophet()  # once here, before worker processes fork, and quiet from the start
        if self.country:
            holiday_dates(self.country, data.periods[0], data.periods[0])  # a bad country code fails now
        return super().fit(data, series)

    def _grid_regressors(self, data, grid):
        if not self.country or daily_holidays(data.freq) or data.freq.unit == "Y":
            return [], None
        return ["holiday"], holiday_indicator(self.country, grid, data.freq)

    # -- per series ------------------------------------------------------------------------

    def _fit_chunk(self, chunk, states):
        load_prophet()
        return [None if np.isnan(y).all() else self._fit_one(y, chunk, j) for j, y in enumerate(chunk.series)]

    def _fit_one(self, raw: np.ndarray, chunk, j: int) -> dict:
        h = chunk.horizon
        first = int(np.argmax(~np.isnan(raw)))
        y = raw[first:]  # Prophet leaves gaps out of the fit itself
        n = len(y)
        if np.count_nonzero(~np.isnan(y)) < 2:  # Prophet needs two points: repeat the only one
            return {"model": None, "last": float(y[~np.isnan(y)][-1])}
        stamps = pd.DatetimeIndex(chunk.grid[chunk.starts[j] + first : chunk.end + h])
        x, _ = usable_regressors(chunk.regressors[j], first, n)
        names = [f"r{c}" for c in range(x.shape[1])]  # Prophet reserves many names; these are safe
        history = pd.DataFrame({"ds": stamps[:n], "y": y, **{k: x[:n, c] for c, k in enumerate(names)}})
        seen = stamps[:n][~np.isnan(y)]
        model = self._model(stamps, chunk, seen[-1] - seen[0])
        for name in names:
            model.add_regressor(name)
        model.fit(history, seed=(self.seed + int(chunk.ids[j])) % 2**31)
        model.stan_fit = model.stan_backend = None  # what forecasting needs is in params and history
        return {"model": model, "first": first, "n": n}

    @staticmethod
    def _future(chunk, j: int, first: int, n: int) -> pd.DataFrame:
        """The horizon's dates and regressors, from the chunk being forecast (a what-if scenario's
        future regressors, or the training data's); the columns kept depend on the history only."""
        stamps = pd.DatetimeIndex(chunk.grid[chunk.starts[j] + first : chunk.end + chunk.horizon])
        x, _ = usable_regressors(chunk.regressors[j], first, n)
        return pd.DataFrame({"ds": stamps[n:], **{f"r{c}": x[n:, c] for c in range(x.shape[1])}})

    def _model(self, stamps: pd.DatetimeIndex, chunk, span: pd.Timedelta):
        freq = chunk.freq
        holidays = None
        if self.country and daily_holidays(freq):
            table = holiday_dates(self.country, stamps[0], stamps[-1])
            holidays = pd.DataFrame({"ds": table["date"], "holiday": table["holiday"]}) if len(table) else None
        return load_prophet()(
            growth="linear",
            changepoint_prior_scale=self.changepoint_prior_scale,
            seasonality_prior_scale=self.seasonality_prior_scale,
            holidays_prior_scale=self.holidays_prior_scale,
            seasonality_mode=self.seasonality_mode,
            changepoint_range=self.changepoint_range,
            n_changepoints=self.n_changepoints,
            holidays=holidays,
            uncertainty_samples=self.num_samples,
            **seasonalities(freq, span, self.yearly_seasonality, self.weekly_seasonality, self.daily_seasonality),
        )

    def _forecast_series(self, y, state, chunk, j, levels, rng):
        h = chunk.horizon
        if state["model"] is None:
            return from_normal(np.full(h, state["last"]), np.zeros(h), levels)
        model = state["model"]
        frame = model.setup_dataframe(self._future(chunk, j, state["first"], state["n"]))
        frame["trend"] = model.predict_trend(frame)
        parts = model.predict_seasonal_components(frame)
        mean = (frame["trend"] * (1 + parts["multiplicative_terms"]) + parts["additive_terms"]).to_numpy()
        saved = np.random.get_state()
        np.random.seed(int(rng.integers(2**32)))
        try:
            draws = model.sample_posterior_predictive(frame, vectorized=True)["yhat"]  # (h, samples)
        finally:
            np.random.set_state(saved)
        _, quant = from_samples(np.asarray(draws, dtype="float64").T, levels)
        return np.asarray(mean, dtype="float64"), quant
