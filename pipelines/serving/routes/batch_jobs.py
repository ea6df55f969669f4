"""CreateBatchInferenceJob and DescribeBatchInferenceJob: JSON Lines in and out under the server's batch folder."""

from __future__ import annotations

from fastapi import APIRouter

from pipelines.serving import schemas as s
from pipelines.serving.errors import ApiError
from pipelines.serving.routes.dependencies import (
    RuntimeDep,
    personalize_group,
    require_snapshot,
    serving_state,
    stored_filter,
)
from pipelines.serving.store import DuplicateName

router = APIRouter(tags=["personalize"])


@router.post("/batch-inference-jobs", status_code=202)
def create_batch_inference_job(body: s.BatchJobRequest, runtime: RuntimeDep) -> dict:
    """CreateBatchInferenceJob: JSON Lines in, JSON Lines out, under the server's batch folder."""
    from pipelines.serving.batch_jobs import BatchPathError, confined, start_job

    group = personalize_group(runtime, body.datasetGroup, "datasetGroup")
    state = serving_state(runtime, group)
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
        expression = stored_filter(runtime, body.filterArn, group, "filterArn")
        require_snapshot(state, group)
    try:
        start_job(runtime.store, body.jobName, group, state.version, state.data, body.model_dump(), source,
                  target, expression)  # fmt: skip
    except DuplicateName as exc:
        raise ApiError(409, str(exc), "jobName") from None
    return {"jobName": body.jobName, "status": "IN_PROGRESS", "modelVersion": state.version}


@router.get("/batch-inference-jobs/{name}")
def describe_batch_inference_job(name: str, runtime: RuntimeDep) -> dict:
    """DescribeBatchInferenceJob: IN_PROGRESS, ACTIVE (done, with its summary) or FAILED (with the reason)."""
    from pipelines.serving.batch_jobs import fail_orphaned

    fail_orphaned(runtime.store, name)
    job = runtime.store.get_job(name)
    if job is None:
        raise ApiError(404, f"no batch inference job {name!r}", "name")
    return job
