"""GetRecommendations (a user's recommendations, or an item's related items) and GetPersonalizedRanking."""

from __future__ import annotations

import math

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pipelines.serving import schemas as s
from pipelines.serving.answers import new_recommendation_id
from pipelines.serving.errors import ApiError
from pipelines.serving.routes.dependencies import (
    RuntimeDep,
    exploration_refused,
    model_state,
    personalize_group,
    require_snapshot,
    served_group,
    stored_filter,
)
from pipelines.serving.runtime import Runtime

router = APIRouter(tags=["personalize"])


def bound_filter(runtime: Runtime, group: str, state, ref: str | None, values: dict | None, field: str):
    """The filter ``ref`` names with ``values`` bound, or None without one; the errors name ``field``."""
    from pipelines.personalize.filters.masks import FilterValuesError

    if ref is None:
        if values:
            raise ApiError(400, "filterValues given without a filter", field.replace("filterArn", "filterValues"))
        return None
    parsed = stored_filter(runtime, ref, group, field)
    try:
        bound = parsed.bind(values or {})
    except FilterValuesError as exc:
        raise ApiError(400, str(exc), field.replace("filterArn", "filterValues")) from None
    require_snapshot(state, group, field)
    if parsed.target != "ItemID":
        raise ApiError(400, f"filter {ref!r} selects users (UserID); recommendations take item filters", field)
    return bound


def exploration_for(runtime: Runtime, group: str, state, override: s.ItemExplorationConfig | None) -> tuple:
    """(explorationWeight, explorationItemAgeCutOff): the request's, else the campaign's; None: the model's."""
    from pipelines.personalize.user_personalization import UserPersonalization

    if not isinstance(state.model, UserPersonalization):
        if override is not None:
            recipe = getattr(state.model, "name", type(state.model).__name__)
            raise exploration_refused(group, recipe, "itemExplorationConfig")
        return None, None
    return runtime.campaigns.exploration(group, override.model_dump() if override is not None else None)


def ranked(state, body: s.RecommendationsRequest, bound, n: int, exclude: list[str]) -> list[tuple[str, float]]:
    from pipelines.personalize.filters.masks import recommend_filtered, related_items_filtered

    model = state.model
    live = state.live_events(body.userId) if bound is not None else None  # the caller holds state.lock
    if body.itemId is not None:
        if bound is not None:
            return related_items_filtered(model, bound, state.data, body.itemId, n, body.userId, exclude, live)
        return model.related_items(body.itemId, n, exclude=exclude)
    seen = bool(getattr(model, "exclude_seen_items", False))  # the recipe's setting; Personalize's default
    if bound is not None:
        return recommend_filtered(model, bound, state.data, body.userId, n, exclude=exclude, exclude_seen=seen,
                                  context=body.context, live=live)  # fmt: skip
    return model.recommend(body.userId, n, context=body.context, exclude=exclude, exclude_seen=seen)


def scored(items: list[tuple[str, float]]) -> list[dict]:
    return [{"itemId": i, "score": round(v, 6)} for i, v in items]


def check_use_case(group, body: s.RecommendationsRequest) -> None:
    """A domain recommender answers its use case only: for a user, or for an item (related items)."""
    from pipelines import domains

    parent = getattr(group, "recommender_of", None)
    if parent is None:
        return
    name = group.name.removeprefix(f"{parent}{domains.RECOMMENDER_SEP}")
    preset = domains.RECOMMENDERS[group.domain][name]
    if preset.answers == "item" and body.itemId is None:
        raise ApiError(400, f"recommender {group.name!r} ({preset.description}) needs itemId", "itemId")
    if preset.answers == "user" and body.userId is None:
        raise ApiError(400, f"recommender {group.name!r} ({preset.description}) needs userId", "userId")


def with_promotions(result: list[dict], promoted: list[tuple[str, float]], name: str) -> list[dict]:
    """The promoted items spread over the list, as Personalize does."""
    n = len(result) + len(promoted)
    for k, (item, score) in enumerate(promoted):
        result.insert(min(k * n // len(promoted), len(result)),
                      {"itemId": item, "score": round(score, 6), "promotionName": name})  # fmt: skip
    return result


def answer(runtime: Runtime, group: str, items_key: str, items: list[dict], state) -> JSONResponse:
    """The answer, remembered by its recommendationId: a PutEvents naming it takes these items as its impression."""
    recommendation_id = new_recommendation_id()
    runtime.answers.remember(recommendation_id, group, [entry["itemId"] for entry in items])
    return JSONResponse({items_key: items, "recommendationId": recommendation_id, "modelVersion": state.version})


@router.post("/recommendations", response_model=s.RecommendationsResponse)
async def get_recommendations(body: s.RecommendationsRequest, runtime: RuntimeDep) -> JSONResponse:
    """GetRecommendations: a user's recommendations (userId) or an item's related items (itemId).

    As in Personalize, items the user already interacted with may come back: a filter such as
    ``EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")`` drops them, or the recipe's
    ``exclude_seen_items`` setting does.
    """
    # Inline on the event loop: the work is a few hundred microseconds of CPU under the GIL, which a
    # thread hop would only add to.
    if body.userId is None and body.itemId is None:
        raise ApiError(422, "give userId (recommendations) or itemId (related items)", "userId")
    group = served_group(runtime, body)
    check_use_case(runtime.groups[group], body)
    state = model_state(runtime, group)
    bound = bound_filter(runtime, group, state, body.filterArn, body.filterValues, "filterArn")
    promoted: list[tuple[str, float]] = []
    promotion = body.promotions[0] if body.promotions else None
    exploration = exploration_for(runtime, group, state, body.itemExplorationConfig)
    from pipelines.personalize.user_personalization import item_exploration

    with state.lock, item_exploration(*exploration):
        try:
            if promotion is not None:
                count = max(1, math.floor(body.numResults * promotion.percentPromotedItems / 100))
                promo_bound = bound_filter(runtime, group, state, promotion.filterArn, promotion.filterValues,
                                           "promotions.0.filterArn")  # fmt: skip
                promoted = ranked(state, body, promo_bound, count, [])
            rest = body.numResults - len(promoted)
            items = ranked(state, body, bound, rest, [i for i, _ in promoted]) if rest > 0 else []
        except NotImplementedError as exc:
            raise ApiError(400, str(exc), "itemId") from None
    result = scored(items)
    if promoted:
        result = with_promotions(result, promoted, promotion.name)
    return answer(runtime, group, "itemList", result, state)


@router.post("/personalize-ranking", response_model=s.RankingResponse)
async def get_personalized_ranking(body: s.RankingRequest, runtime: RuntimeDep) -> JSONResponse:
    """GetPersonalizedRanking: inputList reordered for userId; items the model does not know go last."""
    group = personalize_group(runtime, body.campaignArn, "campaignArn")
    state = model_state(runtime, group)
    bound = bound_filter(runtime, group, state, body.filterArn, body.filterValues, "filterArn")
    with state.lock:
        ranking = state.model.rank(body.userId, body.inputList, context=body.context)
        live = state.live_events(body.userId) if bound is not None else None
    if bound is not None:
        data = state.data
        mask = bound.item_mask(data, data.user_index.get(body.userId), live=live)
        ranking = [(i, v) for i, v in ranking if (k := data.item_index.get(i)) is not None and mask[k]]
    return answer(runtime, group, "personalizedRanking", scored(ranking), state)
