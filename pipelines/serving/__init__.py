"""The serving API: real-time recommendations, events, filters and forecast queries in one FastAPI app.

``create_app`` (pipelines.serving.app) builds it; ``airsight serve`` runs it with uvicorn;
plugins/airsight_serving.py mounts it in Airflow's API server. ``export_events``
(pipelines.serving.events) appends the stored events to an interactions CSV for training.
Nothing heavy is imported here: the CLI imports this package at start-up.
"""
