"""The serving API: GetRecommendations, GetPersonalizedRanking, PutEvents, PutItems, PutUsers, campaigns,
filters and forecast queries.

``create_app()`` builds one FastAPI app from the environment (see ``settings``); uvicorn runs it
with ``--factory``, and the Airflow plugin mounts it in Airflow's API server. Every route but
/health (and the OpenAPI spec and its docs page, which hold no data) needs an API key; see
``auth``. Requests larger than ``max_body_bytes`` get 413 before their body is read; invalid
bodies get 422 naming each field and the reason.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response

from pipelines.serving import errors
from pipelines.serving import forecasts as fq
from pipelines.serving import schemas as s
from pipelines.serving.auth import ApiKeyGuard, document_security
from pipelines.serving.errors import ApiError
from pipelines.serving.filter_registry import FilterNotFound, describe
from pipelines.serving.middleware import AccessLog, BodyLimit
from pipelines.serving.runtime import Runtime
from pipelines.serving.settings import ServingSettings
from pipelines.serving.store import DuplicateName


def create_app(settings: ServingSettings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The serving app; ``runtime`` is built from ``settings`` (default: the environment) unless given."""
    runtime = runtime or Runtime(settings or ServingSettings.from_env())
    if not logging.getLogger("airsight").handlers:
        from pipelines.serving.observability import configure_logging

        configure_logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runtime.start()  # load champions and exports before the first request
        yield
        runtime.stop()

    app = FastAPI(
        title="Airsight serving API",
        version="1",
        description="Recommendations, rankings, events, filters and forecast queries. Every route but "
        "/health needs an API key (`airsight serve --create-key NAME`).",
        lifespan=lifespan,
    )
    app.state.runtime = runtime

    for exception, handler in errors.HANDLERS.items():
        app.add_exception_handler(exception, handler)

    def personalize_group(ref: str, field: str) -> str:
        name = ref.rsplit("/", 1)[-1]
        if name not in runtime.personalize_groups:
            raise ApiError(404, f"no Personalize dataset group {name!r}; served: {sorted(runtime.personalize_groups)}",
                           field)  # fmt: skip
        return name

    def model_state(group: str):
        holder = runtime.models.get(group)
        state = holder.state if holder else None
        if state is None:
            reason = holder.error if holder and holder.error else "no champion model in the registry yet"
            raise ApiError(503, f"dataset group {group!r} has no serving model: {reason}")
        if runtime.settings.sync_reads:
            runtime.tail.catch_up()
        return state

    def bound_filter(group: str, state, ref: str | None, values: dict | None, field: str):
        from pipelines.personalize.filters import FilterValuesError

        if ref is None:
            if values:
                raise ApiError(400, "filterValues given without a filter", field.replace("filterArn", "filterValues"))
            return None
        try:
            parsed = runtime.filters.get(ref, group)
            bound = parsed.bind(values or {})
        except FilterNotFound as exc:
            raise ApiError(404, str(exc), field) from None
        except FilterValuesError as exc:
            raise ApiError(400, str(exc), field.replace("filterArn", "filterValues")) from None
        if state.data is None:
            raise ApiError(409, f"filters read the group's imported snapshot and {group!r} has none yet", field)
        if parsed.target != "ItemID":
            raise ApiError(400, f"filter {ref!r} selects users (UserID); recommendations take item filters", field)
        return bound

    def exploration_for(group: str, state, override: s.ItemExplorationConfig | None) -> tuple:
        """(explorationWeight, explorationItemAgeCutOff): the request's, else the campaign's; None: the model's."""
        from pipelines.personalize.user_personalization import UserPersonalization

        if not isinstance(state.model, UserPersonalization):
            if override is not None:
                raise ApiError(400, f"itemExplorationConfig applies to user-personalization; campaign {group!r} serves "
                               f"{getattr(state.model, 'name', type(state.model).__name__)}",
                               "itemExplorationConfig")  # fmt: skip
            return None, None
        return runtime.campaigns.exploration(group, override.model_dump() if override is not None else None)

    def ranked(state, body: s.RecommendationsRequest, bound, n: int, exclude: list[str]) -> list[tuple[str, float]]:
        from pipelines.personalize.filters import recommend_filtered, related_items_filtered

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

    @app.get("/health", tags=["operations"])
    def health() -> dict:
        """Liveness and what serves: each model's version, load errors, each forecast export."""
        runtime.start()
        return runtime.health()

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics."""
        payload, content_type = runtime.metrics.render()
        return Response(payload, media_type=content_type)

    @app.post("/recommendations", tags=["personalize"], response_model=s.RecommendationsResponse)
    async def get_recommendations(body: s.RecommendationsRequest) -> JSONResponse:
        """GetRecommendations: a user's recommendations (userId) or an item's related items (itemId).

        As in Personalize, items the user already interacted with may come back: a filter such as
        ``EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")`` drops them, or the recipe's
        ``exclude_seen_items`` setting does.
        """
        # Inline on the event loop: the work is a few hundred microseconds of CPU under the GIL, which a
        # thread hop would only add to.
        if body.userId is None and body.itemId is None:
            raise ApiError(422, "give userId (recommendations) or itemId (related items)", "userId")
        group = personalize_group(body.campaignArn, "campaignArn")
        state = model_state(group)
        bound = bound_filter(group, state, body.filterArn, body.filterValues, "filterArn")
        promoted: list[tuple[str, float]] = []
        promotion = body.promotions[0] if body.promotions else None
        exploration = exploration_for(group, state, body.itemExplorationConfig)
        from pipelines.personalize.user_personalization import item_exploration

        with state.lock, item_exploration(*exploration):
            try:
                if promotion is not None:
                    count = max(1, math.floor(body.numResults * promotion.percentPromotedItems / 100))
                    promo_bound = bound_filter(group, state, promotion.filterArn, promotion.filterValues,
                                               "promotions.0.filterArn")  # fmt: skip
                    promoted = ranked(state, body, promo_bound, count, [])
                rest = body.numResults - len(promoted)
                items = ranked(state, body, bound, rest, [i for i, _ in promoted]) if rest > 0 else []
            except NotImplementedError as exc:
                raise ApiError(400, str(exc), "itemId") from None
        result = [{"itemId": i, "score": round(v, 6)} for i, v in items]
        if promoted:
            n = len(result) + len(promoted)
            for k, (item, score) in enumerate(promoted):  # spread over the list, as Personalize does
                result.insert(min(k * n // len(promoted), len(result)),
                              {"itemId": item, "score": round(score, 6), "promotionName": promotion.name})  # fmt: skip
        return JSONResponse({"itemList": result, "recommendationId": f"RID-{uuid.uuid4().hex}",
                             "modelVersion": state.version})  # fmt: skip

    @app.post("/personalize-ranking", tags=["personalize"], response_model=s.RankingResponse)
    async def get_personalized_ranking(body: s.RankingRequest) -> JSONResponse:
        """GetPersonalizedRanking: inputList reordered for userId; items the model does not know go last."""
        group = personalize_group(body.campaignArn, "campaignArn")
        state = model_state(group)
        bound = bound_filter(group, state, body.filterArn, body.filterValues, "filterArn")
        with state.lock:
            ranking = state.model.rank(body.userId, body.inputList, context=body.context)
            live = state.live_events(body.userId) if bound is not None else None
        if bound is not None:
            data = state.data
            mask = bound.item_mask(data, data.user_index.get(body.userId), live=live)
            ranking = [(i, v) for i, v in ranking if (k := data.item_index.get(i)) is not None and mask[k]]
        return JSONResponse({"personalizedRanking": [{"itemId": i, "score": round(v, 6)} for i, v in ranking],
                             "recommendationId": f"RID-{uuid.uuid4().hex}", "modelVersion": state.version})  # fmt: skip

    @app.post("/events", tags=["personalize"], response_model=s.PutEventsResponse)
    def put_events(body: s.PutEventsRequest) -> dict:
        """PutEvents: stored durably before the answer, then applied so the next recommendations reflect them."""
        group = personalize_group(body.trackingId, "trackingId")
        events = [e.model_dump(exclude_none=True) for e in body.eventList]
        user = body.userId or body.sessionId  # an anonymous session stands for its user, as in Personalize
        ids = runtime.store.put_events(group, body.trackingId, user, body.sessionId, events)
        runtime.metrics.events.labels(group).inc(len(ids))
        runtime.tail.catch_up()
        return {"eventsStored": len(ids), "eventIds": ids}

    def dataset_of(ref: str | None, kind: str) -> tuple[str, Any]:
        """The group and its ``kind`` dataset from a datasetArn: <group>/<KIND>, an ARN ending so, or <group>."""
        if ref is None:
            if len(runtime.personalize_groups) != 1:
                raise ApiError(400, "datasetArn is required where the server serves several Personalize groups: "
                               f"{sorted(runtime.personalize_groups)}", "datasetArn")  # fmt: skip
            group = next(iter(runtime.personalize_groups))
        else:
            parts = [p for p in ref.split("/") if p] or [ref]
            if len(parts) > 1 and parts[-1].upper() in ("INTERACTIONS", "ITEMS", "USERS"):
                if parts[-1].upper() != kind:
                    raise ApiError(400, f"datasetArn {ref!r} names the {parts[-1].upper()} dataset; this call puts "
                                   f"{kind}", "datasetArn")  # fmt: skip
                parts = parts[:-1]
            group = personalize_group(parts[-1], "datasetArn")
        dataset = runtime.groups[group].dataset(kind)
        if dataset is None:
            raise ApiError(404, f"dataset group {group!r} has no {kind} dataset in its settings", "datasetArn")
        return group, dataset

    def put_records(kind: str, ref: str | None, records: list[tuple[str, Any]], list_field: str) -> dict:
        from pipelines.serving.catalog import PropertiesError, check_properties

        group, dataset = dataset_of(ref, kind)
        checked = []
        for k, (record_id, properties) in enumerate(records):
            try:
                checked.append((record_id, check_properties(dataset, kind, properties, f"{list_field}.{k}.properties")))
            except PropertiesError as exc:
                raise ApiError(400, f"{exc.field}: {exc.message}", exc.field) from None
        ids = runtime.store.put_records(group, kind, checked)
        runtime.tail.catch_up()
        return {"datasetGroup": group, "recordsStored": len(ids), "recordIds": ids}

    @app.post("/items", tags=["personalize"], response_model=s.PutRecordsResponse)
    def put_items(body: s.PutItemsRequest) -> dict:
        """PutItems: items checked against the group's ITEMS schema, stored durably, recommendable and filterable at
        once; a record replaces the item's previous fields."""
        return put_records("ITEMS", body.datasetArn, [(i.itemId, i.properties) for i in body.items], "items")

    @app.post("/users", tags=["personalize"], response_model=s.PutRecordsResponse)
    def put_users(body: s.PutUsersRequest) -> dict:
        """PutUsers: users checked against the group's USERS schema, stored durably, seen by filters at once."""
        return put_records("USERS", body.datasetArn, [(u.userId, u.properties) for u in body.users], "users")

    def describe_campaign(group: str) -> dict:
        holder = runtime.models.get(group)
        state = holder.state if holder else None
        config = dict(runtime.campaigns.get(group))
        model = state.model if state else None
        if model is not None and callable(getattr(model, "exploration", None)):
            from pipelines.personalize.user_personalization import item_exploration

            with item_exploration(*runtime.campaigns.exploration(group)):
                weight, cut_off = model.exploration()
            config["itemExplorationConfig"] = {"explorationWeight": f"{weight:g}",
                                               "explorationItemAgeCutOff": f"{cut_off:g}"}  # fmt: skip
        return {"name": group, "campaignArn": f"campaign/{group}", "datasetGroup": group,
                "modelVersion": state.version if state else None,
                "recipe": getattr(model, "name", None), "campaignConfig": config}  # fmt: skip

    @app.get("/campaigns/{name}", tags=["personalize"])
    def get_campaign(name: str) -> dict:
        """DescribeCampaign: the group's serving model and its campaignConfig in force (values as text)."""
        return describe_campaign(personalize_group(name, "name"))

    @app.put("/campaigns/{name}", tags=["personalize"])
    def update_campaign(name: str, body: s.UpdateCampaignRequest) -> dict:
        """UpdateCampaign: campaignConfig.itemExplorationConfig for every request (user-personalization); it replaces
        the previous config and reaches every server within a second."""
        group = personalize_group(name, "name")
        holder = runtime.models.get(group)
        model = holder.state.model if holder and holder.state else None
        explore = body.campaignConfig.itemExplorationConfig
        if explore is not None and model is not None and not callable(getattr(model, "exploration", None)):
            raise ApiError(400, f"itemExplorationConfig applies to user-personalization; campaign {group!r} serves "
                           f"{getattr(model, 'name', '?')}", "campaignConfig.itemExplorationConfig")  # fmt: skip
        config = {}
        if explore is not None:
            config["itemExplorationConfig"] = {k: v for k, v in explore.model_dump().items() if v is not None}
        runtime.campaigns.put(group, config)
        return describe_campaign(group)

    @app.post("/filters", tags=["filters"], status_code=201, response_model=s.FilterDescription)
    def create_filter(body: s.CreateFilterRequest) -> dict:
        """CreateFilter: the expression is checked against the dataset group's schema now."""
        from pipelines.personalize.filter_parser import FilterExpressionError

        group = body.datasetGroup.rsplit("/", 1)[-1]
        try:
            return runtime.filters.create(body.name, group, body.filterExpression)
        except FilterExpressionError as exc:
            raise ApiError(422, str(exc), "filterExpression") from None
        except DuplicateName as exc:
            raise ApiError(409, str(exc), "name") from None
        except LookupError as exc:
            raise ApiError(404, str(exc), "datasetGroup") from None
        except ValueError as exc:
            field = "name" if str(exc).startswith("name") else "filterExpression"
            raise ApiError(422, str(exc), field) from None

    @app.get("/filters", tags=["filters"], response_model=s.FilterList)
    def list_filters(datasetGroup: str | None = Query(None, max_length=256)) -> dict:
        """ListFilters, of one dataset group if given."""
        return {"filters": [describe(r) for r in runtime.store.list_filters(datasetGroup)]}

    @app.get("/filters/{name}", tags=["filters"], response_model=s.FilterDescription)
    def describe_filter(name: str) -> dict:
        row = runtime.store.get_filter(name)
        if row is None:
            raise ApiError(404, f"no filter {name!r}", "name")
        return describe(row)

    @app.delete("/filters/{name}", tags=["filters"], status_code=204, response_class=Response)
    def delete_filter(name: str) -> Response:
        if not runtime.filters.delete(name):
            raise ApiError(404, f"no filter {name!r}", "name")
        return Response(status_code=204)

    def export_of(ref: str, field: str) -> fq.ForecastExport:
        name = ref.rsplit("/", 1)[-1]
        holder = runtime.forecasts.get(name)
        if holder is None:
            raise ApiError(404, f"no forecast group {name!r}; served: {sorted(runtime.forecasts)}", field)
        if holder.export is None:
            raise ApiError(503, f"forecast group {name!r} has no published forecast yet" +
                           (f" ({holder.error})" if holder.error else ""))  # fmt: skip
        return holder.export

    @app.post("/forecasts/query", tags=["forecast"])
    def query_forecast(body: s.ForecastQuery) -> dict:
        """QueryForecast: series matching the filters, between the dates, the chosen forecast types, paged."""
        export = export_of(body.forecastArn, "forecastArn")
        try:
            answer = fq.query(export, body.filters, body.startDate, body.endDate, body.forecastTypes,
                              body.maxResults, body.nextToken)  # fmt: skip
        except fq.QueryError as exc:
            raise ApiError(400, exc.message, exc.field) from None
        if not answer["forecast"]["series"] and body.filters and not body.nextToken:
            raise ApiError(404, f"no series matches {json.dumps(body.filters)} in {body.forecastArn}", "filters")
        return answer

    @app.get("/forecasts/{group}/items", tags=["forecast"])
    def list_forecast_items(
        group: str,
        maxResults: int = Query(100, ge=1, le=1000),
        nextToken: str | None = Query(None, max_length=1000),
    ) -> dict:
        """The series (item_id and dimensions) of a group's published forecast, paged."""
        export = export_of(group, "group")
        try:
            return fq.list_items(export, maxResults, nextToken)
        except fq.QueryError as exc:
            raise ApiError(400, exc.message, exc.field) from None

    @app.post("/batch-inference-jobs", tags=["personalize"], status_code=202)
    def create_batch_inference_job(body: s.BatchJobRequest) -> dict:
        """CreateBatchInferenceJob: JSON Lines in, JSON Lines out, under the server's batch folder."""
        from pipelines.serving.batch_jobs import BatchPathError, confined, start_job

        group = personalize_group(body.datasetGroup, "datasetGroup")
        holder = runtime.models.get(group)
        state = holder.state if holder else None
        if state is None:
            raise ApiError(503, f"dataset group {group!r} has no serving model to run the job with")
        root = runtime.settings.resolved_batch_dir()
        try:
            source = confined(root, body.jobInput.path, "jobInput.path")
            target = confined(root, body.jobOutput.path, "jobOutput.path")
        except BatchPathError as exc:
            raise ApiError(422, exc.message, exc.field) from None
        if not source.is_file():
            raise ApiError(404, f"no input file {body.jobInput.path!r} in the batch folder", "jobInput.path")
        expression = None
        if body.filterArn is not None:
            try:
                expression = runtime.filters.get(body.filterArn, group)
            except FilterNotFound as exc:
                raise ApiError(404, str(exc), "filterArn") from None
            if state.data is None:
                raise ApiError(409, f"filters read the group's imported snapshot and {group!r} has none yet")
        try:
            start_job(runtime.store, body.jobName, group, state.version, state.data, body.model_dump(), source,
                      target, expression)  # fmt: skip
        except DuplicateName as exc:
            raise ApiError(409, str(exc), "jobName") from None
        return {"jobName": body.jobName, "status": "IN_PROGRESS", "modelVersion": state.version}

    @app.get("/batch-inference-jobs/{name}", tags=["personalize"])
    def describe_batch_inference_job(name: str) -> dict:
        """DescribeBatchInferenceJob: IN_PROGRESS, ACTIVE (done, with its summary) or FAILED (with the reason)."""
        job = runtime.store.get_job(name)
        if job is None:
            raise ApiError(404, f"no batch inference job {name!r}", "name")
        return job

    app.add_middleware(BodyLimit, limit=runtime.settings.max_body_bytes)
    # Before the body is read (no key, no 413 or 422); scopes by the route that will answer.
    app.add_middleware(ApiKeyGuard, runtime=runtime, routes=app.router.routes)
    # Outermost: 401s and 413s are logged and counted too.
    app.add_middleware(AccessLog, runtime=runtime, routes=app.router.routes)
    document_security(app)
    return app
