"""QueryForecast and the series of a published forecast, from the export the runtime serves."""

from __future__ import annotations

import json

from fastapi import APIRouter, Query

from pipelines.serving import forecasts as fq
from pipelines.serving import schemas as s
from pipelines.serving.errors import ApiError
from pipelines.serving.routes.dependencies import RuntimeDep
from pipelines.serving.runtime import Runtime

router = APIRouter(tags=["forecast"])


def export_of(runtime: Runtime, ref: str, field: str) -> fq.ForecastExport:
    """The published forecast of the group a forecastArn names; 404 for no such group, 503 before one is out."""
    name = ref.rsplit("/", 1)[-1]
    holder = runtime.forecasts.get(name)
    if holder is None:
        raise ApiError(404, f"no forecast group {name!r}; served: {sorted(runtime.forecasts)}", field)
    if holder.export is None:
        raise ApiError(503, f"forecast group {name!r} has no published forecast yet" +
                       (f" ({holder.error})" if holder.error else ""))  # fmt: skip
    return holder.export


@router.post("/forecasts/query")
def query_forecast(body: s.ForecastQuery, runtime: RuntimeDep) -> dict:
    """QueryForecast: series matching the filters, between the dates, the chosen forecast types, paged."""
    export = export_of(runtime, body.forecastArn, "forecastArn")
    try:
        answer = fq.query(export, body.filters, body.startDate, body.endDate, body.forecastTypes,
                          body.maxResults, body.nextToken)  # fmt: skip
    except fq.QueryError as exc:
        raise ApiError(400, exc.message, exc.field) from None
    if not answer["forecast"]["series"] and body.filters and not body.nextToken:
        raise ApiError(404, f"no series matches {json.dumps(body.filters)} in {body.forecastArn}", "filters")
    return answer


@router.get("/forecasts/{group}/items")
def list_forecast_items(
    group: str,
    runtime: RuntimeDep,
    maxResults: int = Query(100, ge=1, le=1000),
    nextToken: str | None = Query(None, max_length=1000),
) -> dict:
    """The series (item_id and dimensions) of a group's published forecast, paged."""
    export = export_of(runtime, group, "group")
    try:
        return fq.list_items(export, maxResults, nextToken)
    except fq.QueryError as exc:
        raise ApiError(400, exc.message, exc.field) from None


@router.post("/forecasts/what-if")
def what_if_forecast(body: s.WhatIfQuery, runtime: RuntimeDep) -> dict:
    """CreateWhatIfForecast on demand: the scenario forecast by the served model, in QueryForecast's shape."""
    from pydantic import ValidationError

    from pipelines.forecast import what_if
    from pipelines.serving.scenarios import ScenarioUnavailable

    export_of(runtime, body.forecastArn, "forecastArn")  # 404 / 503 as QueryForecast answers them
    group = runtime.groups[body.forecastArn.rsplit("/", 1)[-1]]
    try:
        scenario = what_if.Scenario.model_validate(body.scenario)
        if scenario.replacement is not None:
            raise ValueError("a replacement file is a group setting (what_if), not a request: send transformations")
        what_if.check([scenario], *_attributes(group))
    except (ValidationError, ValueError) as exc:
        message = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise ApiError(400, message, "scenario") from None
    try:
        export = runtime.scenarios[group.name].run(scenario, body.timeoutSeconds)
    except TimeoutError as exc:
        raise ApiError(504, str(exc)) from None
    except ScenarioUnavailable as exc:
        raise ApiError(503, str(exc)) from None
    try:
        answer = fq.query(export, body.filters, body.startDate, body.endDate, body.forecastTypes,
                          body.maxResults, body.nextToken)  # fmt: skip
    except fq.QueryError as exc:
        raise ApiError(400, exc.message, exc.field) from None
    return {**answer, "whatIf": scenario.name}


def _attributes(group) -> tuple[list[str], set[str]]:
    related = group.datasets.RELATED_TIME_SERIES
    features = [f for f in (related.field_names if related else []) if f not in {*group.series_keys, "timestamp"}]
    meta = group.datasets.ITEM_METADATA
    return features, {*group.series_keys, *(meta.field_names if meta else [])}


def _first_error(error) -> str:
    first = error.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
