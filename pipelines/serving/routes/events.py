"""PutEvents: real-time interactions, stored durably, then applied to the serving model."""

from __future__ import annotations

from fastapi import APIRouter

from pipelines.serving import schemas as s
from pipelines.serving.routes.dependencies import RuntimeDep, dataset_group

router = APIRouter(tags=["personalize"])


@router.post("/events", response_model=s.PutEventsResponse)
def put_events(body: s.PutEventsRequest, runtime: RuntimeDep) -> dict:
    """PutEvents: stored durably before the answer, then applied so the next recommendations reflect them.

    An event naming a recommendationId and listing no impression is stored with that answer's items
    as its impression (Personalize's implicit impressions); an unknown or expired id is ignored.
    """
    group = dataset_group(runtime, body.trackingId, "trackingId")  # a recommender's events are its group's
    events = [e.model_dump(exclude_none=True) for e in body.eventList]
    runtime.answers.fill_impressions(group, events)
    user = body.userId or body.sessionId  # an anonymous session stands for its user, as in Personalize
    ids = runtime.store.put_events(group, body.trackingId, user, body.sessionId, events)
    runtime.metrics.events.labels(group).inc(len(ids))
    runtime.tail.catch_up()
    return {"eventsStored": len(ids), "eventIds": ids}
