"""Airsight's views in Airflow's UI: the forecast explorer, the campaign test page, data and models.

Airflow 3 lists a plugin's ``external_views`` in its navigation and shows each in a frame of its
own page; the pages and their JSON come from this router, which the plugin's app includes under
``/airsight/ui`` (``create_app(views=True)``; the standalone ``airsight serve`` has no views).
Airflow does not guard plugin routes, so every route here asks for Airflow's own login (``login``):
the JWT of the UI's session cookie or a Bearer token from Airflow's ``/auth/token``. API keys do
not open the views. The data comes through the serving API's own code: the runtime's published
forecast and serving models, the route functions of GetRecommendations and PutEvents, the
registry's model versions. Pages and scripts are package data (``static/``), with no CDN.
"""

from pipelines.serving.views.routes import pages, router

ROUTERS = (pages, router)
__all__ = ["ROUTERS"]
