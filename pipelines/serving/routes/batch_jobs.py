"""Batch inference and batch segment jobs: JSON Lines in and out under the server's batch folder.

CreateBatchInferenceJob and CreateBatchSegmentJob take the same files and run alike, in the
background on the group's serving model version; their Describe calls read the same store rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
KINDS = {"inference": "batch inference job", "segment": "batch segment job"}


@router.post("/batch-inference-jobs", status_code=202)
def create_batch_inference_job(body: s.BatchJobRequest, runtime: RuntimeDep) -> dict:
    """CreateBatchInferenceJob: JSON Lines in, JSON Lines out, under the server's batch folder."""
    from pipelines.serving.batch_jobs import start_job

    group, state, source, target = _job_files(runtime, body)
    expression = None
    if body.filterArn is not None:
        expression = stored_filter(runtime, body.filterArn, group, "filterArn")
        require_snapshot(state, group)
    with _unique_name():
        start_job(runtime.store, body.jobName, group, state.version, state.data, body.model_dump(), source,
                  target, expression)  # fmt: skip
    return {"jobName": body.jobName, "status": "IN_PROGRESS", "modelVersion": state.version}


@router.get("/batch-inference-jobs/{name}")
def describe_batch_inference_job(name: str, runtime: RuntimeDep) -> dict:
    """DescribeBatchInferenceJob: IN_PROGRESS, ACTIVE (done, with its summary) or FAILED (with the reason)."""
    return _describe(runtime, name, "inference")


@router.post("/batch-segment-jobs", status_code=202)
def create_batch_segment_job(body: s.BatchSegmentJobRequest, runtime: RuntimeDep) -> dict:
    """CreateBatchSegmentJob: the users most likely to interact with each query's item (``{"itemId": …}``,
    item-affinity) or with the items its attributes match (``{"itemAttributes": "ITEMS.GENRE = \\"a\\""}``,
    item-attribute-affinity), ``numResults`` users a line, from the group's serving model."""
    from pipelines.serving.batch_jobs import start_segment_job

    group, state, source, target = _job_files(runtime, body)
    with _unique_name():
        start_segment_job(runtime.store, body.jobName, group, state.version, state.data, runtime.groups[group],
                          body.model_dump(), source, target)  # fmt: skip
    return {"jobName": body.jobName, "status": "IN_PROGRESS", "modelVersion": state.version}


@router.get("/batch-segment-jobs/{name}")
def describe_batch_segment_job(name: str, runtime: RuntimeDep) -> dict:
    """DescribeBatchSegmentJob: IN_PROGRESS, ACTIVE (done, with its summary) or FAILED (with the reason)."""
    return _describe(runtime, name, "segment")


def _job_files(runtime: RuntimeDep, body: s.BatchJobFiles) -> tuple[str, Any, Path, Path]:
    """The job's group, serving state, input and output paths; the ApiError that refuses it otherwise."""
    from pipelines.serving.batch_jobs import BatchPathError, confined

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
    if target == source:
        raise ApiError(422, "the output would replace the job's input: give another path", "jobOutput.path")
    return group, state, source, target


@contextmanager
def _unique_name() -> Iterator[None]:
    """A job name that is taken (by a job of either kind) answers 409."""
    try:
        yield
    except DuplicateName as exc:
        raise ApiError(409, str(exc), "jobName") from None


def _describe(runtime: RuntimeDep, name: str, kind: str) -> dict:
    from pipelines.serving.batch_jobs import fail_orphaned

    fail_orphaned(runtime.store, name)
    job = runtime.store.get_job(name, kind)
    if job is None:
        raise ApiError(404, f"no {KINDS[kind]} {name!r}", "name")
    return job
