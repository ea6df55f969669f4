"""CreateFilter, ListFilters, DescribeFilter and DeleteFilter: filters kept in the serving store."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response

from pipelines.serving import schemas as s
from pipelines.serving.errors import ApiError
from pipelines.serving.filter_registry import describe
from pipelines.serving.routes.dependencies import RuntimeDep
from pipelines.serving.store import DuplicateName

router = APIRouter(tags=["filters"])


@router.post("/filters", status_code=201, response_model=s.FilterDescription)
def create_filter(body: s.CreateFilterRequest, runtime: RuntimeDep) -> dict:
    """CreateFilter: the expression is checked against the dataset group's schema now."""
    from pipelines.personalize.filters.parser import FilterExpressionError

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


@router.get("/filters", response_model=s.FilterList)
def list_filters(runtime: RuntimeDep, datasetGroup: str | None = Query(None, max_length=256)) -> dict:
    """ListFilters, of one dataset group if given."""
    return {"filters": [describe(r) for r in runtime.store.list_filters(datasetGroup)]}


@router.get("/filters/{name}", response_model=s.FilterDescription)
def describe_filter(name: str, runtime: RuntimeDep) -> dict:
    row = runtime.store.get_filter(name)
    if row is None:
        raise ApiError(404, f"no filter {name!r}", "name")
    return describe(row)


@router.delete("/filters/{name}", status_code=204, response_class=Response)
def delete_filter(name: str, runtime: RuntimeDep) -> Response:
    if not runtime.filters.delete(name):
        raise ApiError(404, f"no filter {name!r}", "name")
    return Response(status_code=204)
