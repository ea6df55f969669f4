"""Batch inference jobs (Personalize's CreateBatchInferenceJob): JSON Lines in, JSON Lines out.

Each input line is one request, in Personalize's batch input shapes:

    {"userId": "u1"}                              recommendations for a user
    {"itemId": "i1"}                              items related to an item
    {"userId": "u1", "itemList": ["i1", "i2"]}    the list ranked for the user (personalized ranking)

and each may carry ``"filterValues"`` for the job's filter expression. Recommendations follow the
recipe's ``exclude_seen_items`` setting, as the HTTP API does (Personalize's default: seen items
may come back; a filter drops them). Each output line is
Personalize's batch output: ``{"input": {...}, "output": {"recommendedItems": [...], "scores":
[...]}, "error": null}``, in input order. Where the model had to fall back (an unknown user or
item, listed items it never saw), ``output`` also says so in ``"fallback"``. A line that is not
a valid request gets ``"output": null`` and ``"error": "line N: what is wrong"``; the job goes
on and counts it. Blank lines are skipped.

The job streams: one line read, answered and written at a time, so memory does not grow with
the file. Output goes to a temporary name beside the target and is renamed into place at the
end, so a reader sees the previous output or the whole new one, never half of one. Paths may
be local or fsspec URLs (``s3://…``); ``.gz`` and other compressed inputs are read as such.

``batch_infer`` runs a file; ``recommend_all_users`` and ``related_items_all`` write the same
lines for every user or item of a dataset group (the DAG's batch step). The ``airsight
batch-recommend`` command (``add_arguments``/``run``) loads a group's champion or a given model.
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import os
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.personalize.data import InteractionData
    from pipelines.personalize.filters.masks import BoundFilter, Filter

MAX_RESULTS = 500  # Personalize's limit on numResults and on itemList (pipelines.personalize.base)
DEFAULT_RESULTS = 25
KEYS = ("userId", "itemId", "itemList", "filterValues")
KINDS = ("recommendations", "related_items", "ranking")


class BadRequest(ValueError):
    """One input line that is not a valid request; the job writes an error entry and goes on."""


@dataclass
class BatchSummary:
    """What a job did: counts per request kind, errors, fallbacks, where the output went."""

    input: str
    output: str
    num_results: int
    filter: str | None
    lines: int = 0
    succeeded: int = 0
    failed: int = 0
    blank_lines: int = 0
    fallbacks: int = 0
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    first_errors: list[str] = field(default_factory=list)  # the first few error messages, for the log
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class BatchJob:
    """Answers requests with a trained model (a ``Recipe``), an optional filter and the data it reads.

    What ``_run`` asks of a job (``pipelines.personalize.segments.SegmentJob`` answers it too):
    ``check`` a decoded line into a request, ``answer`` it, name its ``kind``, start a ``summary``,
    and ``empty_ok``: whether an input without requests is a finished job or a failed one.
    """

    empty_ok = True
    label = "batch inference"

    def __init__(
        self,
        model: Any,
        num_results: int = DEFAULT_RESULTS,
        filter_expression: str | Filter | None = None,
        data: InteractionData | None = None,
    ):
        if not hasattr(model, "item_ids_"):
            raise ValueError("the model is not trained: batch inference needs a fitted recipe")
        try:
            count = None if isinstance(num_results, bool) else operator.index(num_results)  # numpy integers too
        except TypeError:
            count = None
        if count is None or not 1 <= count <= MAX_RESULTS:
            raise ValueError(f"numResults must be an integer between 1 and {MAX_RESULTS}, got {num_results!r}")
        self.model, self.num_results, self.data = model, count, data
        self.filter = _parse_filter(filter_expression, data)

    def summary(self, source: str, output: str) -> BatchSummary:
        return BatchSummary(source, output, self.num_results, getattr(self.filter, "expression", None))

    def check(self, request: Any) -> dict:
        return _check(request)

    def kind(self, request: dict) -> str:
        return _kind(request)

    def answer(self, request: Mapping[str, Any]) -> dict:
        """The ``output`` object for a checked request; ValueError and friends say why it cannot be served."""
        bound = self._bind(request.get("filterValues"))
        user_id, item_id, items = request.get("userId"), request.get("itemId"), request.get("itemList")
        fallback = None
        if items is not None:
            found = self._rank(user_id, items, bound)
            unknown = [i for i in dict.fromkeys(items) if i not in self.model.item_index_]
            if unknown:
                fallback = f"{len(unknown)} listed item(s) unknown to the model, ranked last"
        elif user_id is not None:
            found = self._recommend(user_id, bound)
            if user_id not in self.model.user_index_ and user_id not in self.model.recent_events_:
                fallback = "userId unknown to the model: cold-start recommendations"
        else:
            found = self._related(item_id, bound)
            if item_id not in self.model.item_index_:
                fallback = "itemId unknown to the model: popular items"
        output: dict[str, Any] = {"recommendedItems": [i for i, _ in found], "scores": [s for _, s in found]}
        if fallback:
            output["fallback"] = fallback
        return output

    def _bind(self, values: Any) -> BoundFilter | None:
        if self.filter is None:
            if values is not None:
                raise BadRequest("filterValues given, but the job has no filter expression")
            return None
        return self.filter.bind(values)

    def _recommend(self, user_id: str, bound: BoundFilter | None) -> list[tuple[str, float]]:
        # The recipe's exclude_seen_items setting, as the HTTP API serves it (False as in Personalize).
        seen = bool(getattr(self.model, "exclude_seen_items", False))
        if bound is None:
            return self.model.recommend(user_id, n=self.num_results, exclude_seen=seen)
        from pipelines.personalize.filters.masks import recommend_filtered

        return recommend_filtered(self.model, bound, self.data, user_id, n=self.num_results, exclude_seen=seen)

    def _related(self, item_id: str, bound: BoundFilter | None) -> list[tuple[str, float]]:
        if bound is None:
            return self.model.related_items(item_id, n=self.num_results)
        from pipelines.personalize.filters.masks import related_items_filtered

        return related_items_filtered(self.model, bound, self.data, item_id, n=self.num_results)

    def _rank(self, user_id: str, items: list[str], bound: BoundFilter | None) -> list[tuple[str, float]]:
        ranked = self.model.rank(user_id, items)
        if bound is None:
            return ranked
        mask = bound.item_mask(self.data, self.data.user_index.get(user_id))
        index = self.data.item_index
        return [(i, s) for i, s in ranked if i in index and mask[index[i]]]


def batch_infer(
    model: Any,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    num_results: int = DEFAULT_RESULTS,
    filter_expression: str | Filter | None = None,
    progress: bool = True,
    data: InteractionData | None = None,
) -> dict:
    """Answer every request of a JSON Lines file into another; return the job's summary.

    ``data`` (the dataset group's ``InteractionData``) is needed only with a filter: filters
    read the catalog's metadata and the users' interactions. Problems with the job itself (no
    such input, a malformed filter, numResults out of range) raise before anything is written;
    problems with a line become that line's error entry.
    """
    return run_file(BatchJob(model, num_results, filter_expression, data), input_path, output_path, progress)


def run_file(job: BatchJob, input_path: str | os.PathLike, output_path: str | os.PathLike, progress: bool) -> dict:
    """Answer every line of a JSON Lines file with ``job`` (a BatchJob or a SegmentJob) into another."""
    import fsspec

    source = str(input_path)
    fs, path = fsspec.core.url_to_fs(source)
    if not fs.isfile(path):
        raise FileNotFoundError(f"batch input {source} does not exist or is not a file")
    compressed = fsspec.utils.infer_compression(source) is not None
    total = None if compressed else fs.size(path)
    with fsspec.open(source, "rb", compression="infer") as handle:
        return _run(job, _file_requests(handle), output_path, source, total, progress, unit="B")


def run_each(job: BatchJob, requests: Iterable[dict], output_path: str | os.PathLike, source: str, progress: bool,
             unit: str = "request", total: int | None = None) -> dict:  # fmt: skip
    """Answer requests given as dicts (not read from a file) with ``job`` into a JSON Lines file."""
    total = len(requests) if total is None and hasattr(requests, "__len__") else total
    return _run(job, _generated(requests), output_path, source, total, progress, unit=unit)


def for_each(
    model: Any,
    ids: Iterable[Any],
    output_path: str | os.PathLike,
    num_results: int = DEFAULT_RESULTS,
    filter_expression: str | Filter | None = None,
    data: InteractionData | None = None,
    progress: bool = True,
    *,
    key: str,
) -> dict:
    """One request per id, ``{"userId": …}`` (recommendations) or ``{"itemId": …}`` (related items)."""
    unit = {"userId": "user", "itemId": "item"}[key]
    requests = ({key: _text(i)} for i in ids)
    total = len(ids) if hasattr(ids, "__len__") else None
    job = BatchJob(model, num_results, filter_expression, data)
    return run_each(job, requests, output_path, f"<every {unit}>", progress, unit=unit, total=total)


# Recommendations for each user id (e.g. ``data.user_ids``); related items for each item id.
recommend_all_users = functools.partial(for_each, key="userId")
related_items_all = functools.partial(for_each, key="itemId")


# The one writer behind all three.
def _run(
    job: BatchJob,
    requests: Iterator[tuple[int, int, Any]],
    output_path: str | os.PathLike,
    source: str,
    total: int | None,
    progress: bool,
    unit: str,
) -> dict:
    """Write one output line per request (``(line number, size, raw line or dict)``) and rename into place."""
    from tqdm import tqdm

    summary = job.summary(source, str(output_path))
    start = time.perf_counter()
    bar = tqdm(
        total=total,
        unit=unit,
        unit_scale=unit == "B",
        desc=job.label,
        file=sys.stderr,
        disable=not progress or None,  # None: off where stderr is not a terminal
        mininterval=0.5,
    )
    try:
        with _atomic_output(str(output_path)) as out:
            for number, size, raw in requests:
                bar.update(size)
                entry = _entry(job, number, raw, summary)
                if entry is None:
                    continue
                out.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
                if summary.lines % 1000 == 0:
                    bar.set_postfix(lines=summary.lines, errors=summary.failed, refresh=False)
            if not summary.lines and not job.empty_ok:  # raised inside: the temporary output goes
                raise ValueError(f"{source} holds nothing to answer (an empty file, or only blank lines)")
    finally:
        bar.close()
    summary.seconds = round(time.perf_counter() - start, 3)
    return summary.as_dict()


def _entry(job: BatchJob, number: int, raw: Any, summary: BatchSummary) -> dict | None:
    """The output line for one input line (None for a blank line), counted in ``summary``."""
    if isinstance(raw, bytes) and not raw.strip():
        summary.blank_lines += 1
        return None
    summary.lines += 1
    request: Any = raw.decode("utf-8", "replace").rstrip("\r\n") if isinstance(raw, bytes) else raw
    try:
        request = _decode(raw)  # echoed as given; answered in its checked form
        output = job.answer(job.check(request))
    except Exception as exc:  # a bad line never stops the job; its entry says what is wrong
        summary.failed += 1
        message = f"line {number}: {_reason(exc)}"
        if len(summary.first_errors) < 5:
            summary.first_errors.append(message)
        return {"input": request, "output": None, "error": message}
    summary.succeeded += 1
    summary.fallbacks += "fallback" in output
    summary.requests[job.kind(request)] += 1  # the shape was checked above
    return {"input": request, "output": output, "error": None}


def _file_requests(handle) -> Iterator[tuple[int, int, bytes]]:
    for number, line in enumerate(handle, 1):
        yield number, len(line), line


def _generated(requests: Iterable[dict]) -> Iterator[tuple[int, int, dict]]:
    for number, request in enumerate(requests, 1):
        yield number, 1, request


def _decode(raw: Any) -> Any:
    if not isinstance(raw, bytes):
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"not UTF-8 text (byte {exc.start + 1})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"not JSON: {exc.msg} at column {exc.colno}") from None


def _check(request: Any) -> dict:
    """``request`` with ids as text; BadRequest unless it is one of the three request shapes."""
    if not isinstance(request, dict):
        raise BadRequest(f"expected a JSON object, got {_json_type(request)}")
    unknown = [k for k in request if k not in KEYS]
    if unknown:
        raise BadRequest(f"unknown key(s) {unknown}; a request has {', '.join(KEYS)}")
    request = dict(request)
    has_user, has_item, has_list = ("userId" in request), ("itemId" in request), ("itemList" in request)
    if has_user and has_item:
        raise BadRequest("give userId or itemId, not both")
    if not has_user and not has_item:
        raise BadRequest("a request needs userId (recommendations, or ranking with itemList) or itemId")
    if has_list and not has_user:
        raise BadRequest("itemList (personalized ranking) needs a userId")
    for key in ("userId", "itemId"):
        if key in request:
            request[key] = _id_value(request[key], key)
    if has_list:
        items = request["itemList"]
        if not isinstance(items, list) or not items:
            raise BadRequest(f"itemList must be a non-empty list of item ids, got {_json_type(items)}")
        if len(items) > MAX_RESULTS:
            raise BadRequest(f"itemList has {len(items)} items; at most {MAX_RESULTS}")
        request["itemList"] = [_id_value(v, f"itemList[{k}]") for k, v in enumerate(items)]
    values = request.get("filterValues")
    if values is not None and not isinstance(values, dict):
        raise BadRequest(f"filterValues must be an object of placeholder names to values, got {_json_type(values)}")
    return request


def _id_value(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest(f"{key} must be a string (or an integer), got {_json_type(value)}")
    text = _text(value)
    if not text.strip():
        raise BadRequest(f"{key} is empty")
    if len(text) > 256:
        raise BadRequest(f"{key} is {len(text)} characters long; Personalize ids have at most 256")
    return text


def _kind(request: dict) -> str:
    if "itemList" in request:
        return "ranking"
    return "recommendations" if "userId" in request else "related_items"


def _reason(exc: Exception) -> str:
    text = str(exc).split("\n")[0] if str(exc) else ""
    if isinstance(exc, BadRequest | ValueError | NotImplementedError | KeyError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _parse_filter(expression: Any, data: InteractionData | None) -> Filter | None:
    if expression is None or expression == "":
        return None
    if data is None:
        raise ValueError("a filter needs the dataset group's data (its items and interactions): pass data=")
    from pipelines.personalize.filters.masks import Filter

    parsed = expression if isinstance(expression, Filter) else Filter.parse(expression, data)
    if parsed.target != "ItemID":
        raise ValueError(f"{parsed!r} selects users (a UserID filter); batch recommendations take ItemID filters")
    return parsed


class _atomic_output:
    """A binary file at a temporary name beside ``target``, renamed to ``target`` only on success."""

    def __init__(self, target: str):
        import fsspec

        self.fs, self.path = fsspec.core.url_to_fs(target)
        parent, _, name = self.path.rpartition("/")
        self.tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp" if parent else f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.local = "file" in protocols

    def __enter__(self):
        if parent := self.path.rpartition("/")[0]:
            self.fs.makedirs(parent, exist_ok=True)
        self.handle = self.fs.open(self.tmp, "wb")
        return self.handle

    def __exit__(self, kind, value, trace) -> None:
        self.handle.close()
        if kind is not None:
            self.fs.rm(self.tmp)
        elif self.local:
            os.replace(self.tmp, self.path)
        else:
            self.fs.mv(self.tmp, self.path)


# The `airsight batch-recommend` command.
def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model (one of)")
    model.add_argument("--group", help="dataset group: its champion model, unless --model-version says otherwise")
    model.add_argument("--model-version", help="a registered version of the group's model (needs --group)")
    model.add_argument("--model", metavar="PATH", help="a pickled trained model (a trusted file: pickle runs code)")
    parser.add_argument("--input", required=True, help="JSON Lines requests (local path or fsspec URL)")
    parser.add_argument("--output", required=True, help="JSON Lines results, written atomically")
    parser.add_argument("--num-results", type=int, default=DEFAULT_RESULTS, help="items per request, 1-500")
    parser.add_argument("--filter", metavar="EXPRESSION", help="a Personalize filter expression for every request")
    parser.add_argument(
        "--snapshot", metavar="DIR", help="snapshot folder the filter reads (default with --group: the newest one)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.num_results <= MAX_RESULTS:
        return _usage(f"--num-results must be between 1 and {MAX_RESULTS}, got {args.num_results}")
    if bool(args.model) == bool(args.group):
        return _usage("give either --group (its champion or --model-version) or --model PATH")
    if args.model_version and not args.group:
        return _usage("--model-version needs --group")
    version, model = _load_model(args)
    if model is None:
        return _usage(f"dataset group {args.group!r} has no champion model yet: train one, or pass --model-version")
    data = None
    if args.filter:
        snapshot = args.snapshot or (_newest_snapshot(args.group) if args.group else None)
        if snapshot is None:
            return _usage("--filter reads the items and interactions: give --snapshot DIR (or --group with a snapshot)")
        from pipelines.personalize.data import InteractionData

        data = InteractionData.from_snapshot(snapshot)
    summary = batch_infer(
        model, args.input, args.output, args.num_results, args.filter, progress=not args.no_progress, data=data
    )
    summary["model"] = args.model or f"personalize.{args.group} version {version}"
    print(json.dumps(summary, indent=2))
    if summary["failed"]:
        print(
            f"{summary['failed']} of {summary['lines']} line(s) failed; their error entries are in {args.output}",
            file=sys.stderr,
        )
    return 0


def _load_model(args: argparse.Namespace) -> tuple[str | None, Any]:
    if args.model:
        import pickle

        with open(args.model, "rb") as handle:
            return None, pickle.load(handle)
    from pipelines.training import pyfunc as models

    if args.model_version:
        return args.model_version, models.load_version("personalize", args.group, args.model_version)
    champion = models.load_champion("personalize", args.group)
    return (None, None) if champion is None else champion


def _newest_snapshot(group_name: str) -> str | None:
    from pathlib import Path

    from pipelines import storage
    from pipelines.settings import find_group

    root = Path(find_group(group_name).storage_root) / "snapshots"
    found = [
        (ts, p)
        for p in (root.iterdir() if root.is_dir() else ())
        if (ts := storage.parse_key(p.name)) is not None and (p / "manifest.json").is_file()
    ]
    return str(max(found)[1]) if found else None


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
