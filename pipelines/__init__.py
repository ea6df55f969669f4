"""Airsight: the library behind the Forecast and Personalize DAGs.

Every DAG task calls exactly one function in this package with a settings object and an
``as_of`` timestamp and gets back a small manifest. Nothing here needs a scheduler.
"""

__version__ = "0.1.0"
