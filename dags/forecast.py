"""Airflow DAGs for Amazon Forecast's workflow, one per forecast dataset group.

plan >> validate_schema >> import_data >> hpo_train (one mapped task per candidate algorithm)
>> backtest >> forecast >> publish; the wiring is in ``_airsight.build_dag``.
"""

from _airsight import build_all

globals().update(build_all("forecast"))
