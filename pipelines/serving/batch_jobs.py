"""Batch jobs through the API: CreateBatchInferenceJob and CreateBatchSegmentJob, and their Describe calls.

A batch inference job runs ``pipelines.personalize.batch.batch_infer``, a batch segment job
``pipelines.personalize.segments.batch_segment``, in a background thread on its own copy of
the group's serving model version (loaded from the registry, so the live model keeps serving
and its real-time updates do not leak into the job). Input and output paths are relative to
the server's batch folder and may not leave it: a key holder cannot make the server read or
write anywhere else. The job's state lives in the serving store, so any server process can
describe it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.serving.store import Store

log = logging.getLogger("airsight.serving")
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 60.0  # six missed beats: the runner is gone
OWNER = f"{socket.gethostname()}:{os.getpid()}"


def fail_orphaned(store: Store, name: str | None = None) -> list[str]:
    """Mark FAILED the jobs (or job ``name``) left IN_PROGRESS by a server that stopped: every job
    at server start, the described one at each DescribeBatchInferenceJob.

    On this host, a job whose process no longer runs is orphaned at once; elsewhere, when its
    heartbeat is older than ``STALE_SECONDS``.
    """
    orphaned = store.fail_orphaned_jobs(STALE_SECONDS, _dead_here, name)
    for name in orphaned:
        log.warning("batch job orphaned: marked FAILED", extra={"job": name})
    return orphaned


def _dead_here(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a live process of another user
        return False
    return False


class BatchPathError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def confined(root: Path, relative: str, field: str) -> Path:
    """``root / relative``, refusing absolute paths, URLs and anything that resolves outside ``root``."""
    if "://" in relative or Path(relative).is_absolute():
        raise BatchPathError(field, "a path relative to the server's batch folder, not absolute or a URL")
    root = root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or path == root:
        raise BatchPathError(field, "the path leaves the server's batch folder")
    return path


def start_job(store: Store, name: str, group: str, version: str, data: Any, request: dict, source: Path,
              target: Path, filter_expression: Any) -> threading.Thread:  # fmt: skip
    """CreateBatchInferenceJob: ``batch_infer`` over ``source`` into ``target`` (see ``run_in_background``)."""

    def infer(model: Any) -> dict:
        from pipelines.personalize.batch import batch_infer

        return batch_infer(model, source, target, request["numResults"], filter_expression, progress=False, data=data)

    return run_in_background(store, name, group, version, request, "inference", infer)


def start_segment_job(store: Store, name: str, group: str, version: str, data: Any, schema: Any, request: dict,
                      source: Path, target: Path) -> threading.Thread:  # fmt: skip
    """CreateBatchSegmentJob: ``batch_segment`` over ``source`` into ``target`` (see ``run_in_background``)."""

    def segment(model: Any) -> dict:
        from pipelines.personalize.segments import batch_segment

        return batch_segment(model, source, target, request["numResults"], data, schema, progress=False)

    return run_in_background(store, name, group, version, request, "segment", segment)


def run_in_background(store: Store, name: str, group: str, version: str, request: dict, kind: str,
                      run: Callable[[Any], dict]) -> threading.Thread:  # fmt: skip
    """Record the job, then ``run`` it on the group's model ``version`` in a daemon thread; the outcome goes
    to the store (its summary, or the failure as its reason).

    While it runs, the job's heartbeat is renewed every ``HEARTBEAT_SECONDS``, so that a server
    that stops mid-job leaves a job any server can tell is orphaned (``fail_orphaned``).
    """
    store.add_job(name, group, request, owner=OWNER, kind=kind)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                store.beat_job(name)
            except Exception:  # a missed beat is retried; STALE_SECONDS allows several
                log.warning("batch job heartbeat failed", extra={"job": name}, exc_info=True)

    def work() -> None:
        from pipelines.training import pyfunc as models

        threading.Thread(target=beat, name=f"batch-{name}-heartbeat", daemon=True).start()
        try:
            model = models.load_version("personalize", group, version)
            summary = run(model)
            summary["modelVersion"] = version
            store.finish_job(name, summary, None)
        except Exception as exc:  # a failed job is reported, never raised into the server
            log.exception("batch job failed", extra={"job": name, "kind": kind})
            store.finish_job(name, None, f"{type(exc).__name__}: {exc}")
        finally:
            stop.set()

    thread = threading.Thread(target=work, name=f"batch-{name}", daemon=True)
    thread.start()
    return thread
