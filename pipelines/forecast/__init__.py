"""The Forecast engine: training data, algorithms behind one interface, metrics and backtests.

``ForecastData`` (data.py) holds a snapshot's series as arrays; ``get_algorithm(name, **params)``
(base.py) finds an algorithm by its Forecast name; ``backtest`` (backtest.py) scores one the way
Amazon Forecast does, with the metrics of metrics.py.

The built-in algorithms are imported here so that they are in the registry whichever module of
the package is imported first; their heavy libraries (statsmodels, scipy) load only when used.
"""

import pipelines.forecast.deepar  # noqa: F401  (DeepAR+; torch loads only when it fits)
from pipelines.forecast import arima, ets, naive, npts, prophet_model, theta  # noqa: F401  (each registers itself)
