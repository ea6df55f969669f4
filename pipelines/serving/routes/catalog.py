"""PutItems and PutUsers: records checked against the group's ITEMS or USERS schema, stored durably and
seen by recommendations and filters at once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from pipelines.serving import schemas as s
from pipelines.serving.errors import ApiError
from pipelines.serving.routes.dependencies import RuntimeDep, dataset_group
from pipelines.serving.runtime import Runtime

router = APIRouter(tags=["personalize"])
KINDS = ("INTERACTIONS", "ITEMS", "USERS")


def dataset_of(runtime: Runtime, ref: str | None, kind: str) -> tuple[str, Any]:
    """The group and its ``kind`` dataset from a datasetArn: <group>/<KIND>, an ARN ending so, or <group>."""
    if ref is None:
        own = sorted({runtime.dataset_groups[g] for g in runtime.personalize_groups})  # recommenders: their group
        if len(own) != 1:
            raise ApiError(400, f"datasetArn is required where the server serves several Personalize groups: {own}",
                           "datasetArn")  # fmt: skip
        group = own[0]
    else:
        parts = [p for p in ref.split("/") if p] or [ref]
        if len(parts) > 1 and parts[-1].upper() in KINDS:
            if parts[-1].upper() != kind:
                raise ApiError(400, f"datasetArn {ref!r} names the {parts[-1].upper()} dataset; this call puts "
                               f"{kind}", "datasetArn")  # fmt: skip
            parts = parts[:-1]
        group = dataset_group(runtime, parts[-1], "datasetArn")
    dataset = runtime.groups[group].dataset(kind)
    if dataset is None:
        raise ApiError(404, f"dataset group {group!r} has no {kind} dataset in its settings", "datasetArn")
    return group, dataset


def put_records(runtime: Runtime, kind: str, ref: str | None, records: list[tuple[str, Any]], list_field: str) -> dict:
    from pipelines.serving.catalog import PropertiesError, check_properties

    group, dataset = dataset_of(runtime, ref, kind)
    checked = []
    for k, (record_id, properties) in enumerate(records):
        try:
            checked.append((record_id, check_properties(dataset, kind, properties, f"{list_field}.{k}.properties")))
        except PropertiesError as exc:
            raise ApiError(400, f"{exc.field}: {exc.message}", exc.field) from None
    ids = runtime.store.put_records(group, kind, checked)
    runtime.tail.catch_up()
    return {"datasetGroup": group, "recordsStored": len(ids), "recordIds": ids}


@router.post("/items", response_model=s.PutRecordsResponse)
def put_items(body: s.PutItemsRequest, runtime: RuntimeDep) -> dict:
    """PutItems: items checked against the group's ITEMS schema, stored durably, recommendable and filterable at
    once; a record replaces the item's previous fields."""
    return put_records(runtime, "ITEMS", body.datasetArn, [(i.itemId, i.properties) for i in body.items], "items")


@router.post("/users", response_model=s.PutRecordsResponse)
def put_users(body: s.PutUsersRequest, runtime: RuntimeDep) -> dict:
    """PutUsers: users checked against the group's USERS schema, stored durably, seen by filters at once."""
    return put_records(runtime, "USERS", body.datasetArn, [(u.userId, u.properties) for u in body.users], "users")
