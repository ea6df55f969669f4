"""The Forecast engine: training data, algorithms behind one interface, metrics and backtests.

``ForecastData`` (data.py) holds a snapshot's series as arrays; ``get_algorithm(name, **params)``
(base.py) finds an algorithm by its Forecast name; ``backtest`` (backtest.py) scores one the way
Amazon Forecast does, with the metrics of metrics.py.

The registry loads the built-in algorithm modules on every lookup (``base.BUILTIN_MODULES``), so
no entry point depends on import order; their heavy libraries (statsmodels, scipy, torch) load
only when used.
"""
