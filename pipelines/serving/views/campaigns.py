"""The campaign test page's data: each Personalize group's serving model, its filters, sample users and items.

Recommendations and test events go through the serving API's own route functions
(``routes.recommendations.get_recommendations``, ``routes.events.put_events``), so the page sees
exactly what an application calling the API would.
"""

from __future__ import annotations

from pipelines.serving.filter_registry import describe
from pipelines.serving.routes.dependencies import serving_state
from pipelines.serving.runtime import Runtime

SAMPLE = 50  # users and items offered as examples


def campaigns(runtime: Runtime) -> list[dict]:
    answer = []
    for name in sorted(runtime.personalize_groups):
        holder, state = runtime.models.get(name), serving_state(runtime, name)
        row = {"name": name, "version": None, "recipe": None, "error": holder.error if holder else None,
               "users": [], "items": [], "eventTypes": [],
               "filters": [describe(r) for r in runtime.store.list_filters(name)]}  # fmt: skip
        if state is not None:
            model = state.model
            row.update(version=state.version, recipe=getattr(model, "name", type(model).__name__))
            data = state.data
            if data is not None:
                row["users"] = [str(u) for u in data.user_ids[:SAMPLE]]
                row["items"] = [str(i) for i in data.item_ids[:SAMPLE]]
                row["eventTypes"] = [str(t) for t in data.event_type_names]
        answer.append(row)
    return answer
