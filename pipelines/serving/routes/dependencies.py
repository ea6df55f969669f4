"""What the routers share: the runtime as a FastAPI dependency, and the lookups from the names a request
gives (campaignArn, trackingId, filterArn, …) to what the runtime serves, each raising the ApiError the API
answers when there is nothing to find.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from pipelines.serving.errors import ApiError
from pipelines.serving.filter_registry import FilterNotFound
from pipelines.serving.runtime import Runtime


async def runtime(request: Request) -> Runtime:
    """The server's runtime, which ``create_app`` puts on the app's state (async: no thread hop to read it)."""
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def personalize_group(runtime: Runtime, ref: str, field: str) -> str:
    """The served Personalize group a name or an ARN ending in ``/<name>`` names; 404 naming ``field``."""
    name = ref.rsplit("/", 1)[-1]
    if name not in runtime.personalize_groups:
        raise ApiError(404, f"no Personalize dataset group {name!r}; served: {sorted(runtime.personalize_groups)}",
                       field)  # fmt: skip
    return name


def dataset_group(runtime: Runtime, ref: str, field: str) -> str:
    """The dataset group a name or ARN names (a recommender's served name gives its dataset group): where
    events, items and users are stored."""
    return runtime.dataset_groups[personalize_group(runtime, ref, field)]


def served_group(runtime: Runtime, body: Any) -> str:
    """The campaign or recommender a GetRecommendations or GetPersonalizedRanking names: one of the two."""
    if (body.campaignArn is None) == (getattr(body, "recommenderArn", None) is None):
        raise ApiError(422, "give campaignArn or recommenderArn (one of them)", "campaignArn")
    if body.campaignArn is not None:
        return personalize_group(runtime, body.campaignArn, "campaignArn")
    return personalize_group(runtime, body.recommenderArn, "recommenderArn")


def serving_state(runtime: Runtime, group: str) -> Any:
    """The group's serving model state, or None while it has none."""
    holder = runtime.models.get(group)
    return holder.state if holder else None


def model_state(runtime: Runtime, group: str) -> Any:
    """The group's serving model state, caught up with the events other processes stored; 503 without one."""
    state = serving_state(runtime, group)
    if state is None:
        holder = runtime.models.get(group)
        reason = holder.error if holder and holder.error else "no champion model in the registry yet"
        raise ApiError(503, f"dataset group {group!r} has no serving model: {reason}")
    if runtime.settings.sync_reads:
        runtime.tail.catch_up()
    return state


def stored_filter(runtime: Runtime, ref: str, group: str, field: str) -> Any:
    """The group's filter a filterArn names, parsed; 404 naming ``field``."""
    try:
        return runtime.filters.get(ref, runtime.dataset_groups.get(group, group))  # a recommender's: its group's
    except FilterNotFound as exc:
        raise ApiError(404, str(exc), field) from None


def require_snapshot(state: Any, group: str, field: str | None = None) -> None:
    """Filters read the imported snapshot: 409 while the serving model has none."""
    if state.data is None:
        raise ApiError(409, f"filters read the group's imported snapshot and {group!r} has none yet", field)


def exploration_refused(group: str, recipe: str, field: str) -> ApiError:
    """The 400 for an itemExplorationConfig sent to a campaign whose recipe does not explore."""
    return ApiError(400, f"itemExplorationConfig applies to user-personalization; campaign {group!r} serves "
                    f"{recipe}", field)  # fmt: skip
