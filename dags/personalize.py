"""Airflow DAGs for Amazon Personalize's workflow, one per personalize dataset group.

plan >> validate_schema >> import_data >> hpo_train (one mapped task per candidate recipe)
>> backtest (offline metrics on Personalize's user split) >> recommend >> publish; the wiring
is in ``_airsight.build_dag``.
"""

from _airsight import build_all

globals().update(build_all("personalize"))
