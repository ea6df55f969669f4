"""The serving API's routes, one router per resource; ``create_app`` includes them in this order."""

from __future__ import annotations

from pipelines.serving.routes import (
    batch_jobs,
    campaigns,
    catalog,
    events,
    filters,
    forecasts,
    operations,
    recommendations,
)

ROUTERS = (
    operations.router,  # /health, /metrics
    recommendations.router,  # /recommendations, /personalize-ranking
    events.router,  # /events
    catalog.router,  # /items, /users
    campaigns.router,  # /campaigns/{name}
    filters.router,  # /filters[/{name}]
    forecasts.router,  # /forecasts/query, /forecasts/{group}/items
    batch_jobs.router,  # /batch-inference-jobs[/{name}], /batch-segment-jobs[/{name}]
)
