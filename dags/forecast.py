"""Airflow DAGs for Forecast: validate_schema >> import_data for each forecast dataset group.

The remaining steps of Amazon Forecast's workflow (train predictors, backtest, forecast,
publish) are added to the same DAG as the engines land.
"""

from _airsight import build_all

globals().update(build_all("forecast"))
