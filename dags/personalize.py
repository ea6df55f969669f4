"""Airflow DAGs for Personalize: validate_schema >> import_data for each personalize dataset group.

Training solutions, offline evaluation, batch recommendations and publishing follow as the
recipe engine lands.
"""

from _airsight import build_all

globals().update(build_all("personalize"))
