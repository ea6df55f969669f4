"""Batch segment jobs (Personalize's CreateBatchSegmentJob): the users most likely to interact with items.

Each input line is one query, in the shapes of Personalize's USER_SEGMENTATION recipes:

    {"itemId": "105"}                                                    item-affinity
    {"itemAttributes": "ITEMS.GENRES = \\"Comedy\\" AND ITEMS.PRICE = 10"}  item-attribute-affinity

and each output line is ``{"input": {...}, "output": {"usersList": [...]}, "error": null}``, in
input order, ``numResults`` users each (25 unless told; at most ``MAX_USERS``). Personalize trains a
recipe for each; here any trained recipe answers both through ``Recipe.users_for_items``, which
scores every user it knows against the item, or against the items the attribute expression
matches (the ``MAX_ATTRIBUTE_ITEMS`` most popular of them, so a broad attribute costs what a narrow
one does). A line that is not a valid query (not JSON, an unknown item, a field the ITEMS schema
lacks, no item matching) gets ``"output": null`` and its ``"error"``, and the job goes on; a job
with no queries at all fails and writes nothing. Writing is ``pipelines.personalize.batch``'s:
streamed, to a temporary name renamed into place only when the job finishes.

Attribute expressions: ``ITEMS.<field> = "value"`` (or a number, for a numeric field) joined by AND
and OR, AND binding tighter (Personalize itself takes only AND; an OR there is two queries). Field
names are the ITEMS schema's, in any case; textual and boolean fields cannot be used, nor the
catalog's ITEM_ID (an item-affinity query says that). A categorical field holding several values
(``Comedy|Action``) equals each of them, so ``ITEMS.GENRES = "Comedy" AND ITEMS.GENRES = "Action"``
matches the items that are both. Expressions become the filter language's tree
(``pipelines.personalize.filters``), which evaluates them over the catalog's metadata.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.personalize import batch
from pipelines.personalize.batch import BadRequest, BatchSummary

if TYPE_CHECKING:
    from pipelines.personalize.data import InteractionData
    from pipelines.personalize.filters.parser import Condition, Junction
    from pipelines.personalize.filters.schema import Schema

DEFAULT_USERS = 25
MAX_USERS = 100_000  # Personalize allows 5 million; a line of 100,000 ids is already 1-2 MB
MAX_ATTRIBUTE_ITEMS = 200  # an attribute's users are scored against at most its most popular items
MAX_EXPRESSION_LENGTH = 2500
MAX_CONDITIONS = 50
KINDS = ("item_affinity", "item_attribute_affinity")
_TOKEN = re.compile(
    r"""(?P<space>\s+)
    |(?P<string>"(?:[^"\\]|\\.)*")
    |(?P<number>-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<punct>[.=])""",
    re.X | re.S,
)


class AttributeExpressionError(BadRequest):
    """An itemAttributes expression that cannot be evaluated: why, and at which column."""

    def __init__(self, reason: str, position: int):
        super().__init__(f"itemAttributes, column {position + 1}: {reason}")
        self.reason, self.position = reason, position


def parse_item_attributes(text: str, schema: Schema) -> Condition | Junction:
    """The expression as a filter tree (Junction of Conditions), its fields checked against ``schema``'s ITEMS."""
    from pipelines.personalize.filters.parser import Junction

    if not isinstance(text, str) or not text.strip():
        raise AttributeExpressionError("the expression is empty", 0)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise AttributeExpressionError(f"{len(text)} characters; at most {MAX_EXPRESSION_LENGTH}", 0)
    fields = schema.get("ITEMS")
    if not fields:
        raise AttributeExpressionError("the dataset group has no ITEMS dataset to take attributes from", 0)
    tokens = _tokens(text)
    alternatives, conjunction, k = [], [], 0
    while True:
        condition, k = _condition(tokens, k, fields)
        conjunction.append(condition)
        if len(conjunction) + sum(map(len, alternatives)) > MAX_CONDITIONS:
            raise AttributeExpressionError(f"more than {MAX_CONDITIONS} conditions", tokens[k - 1][2])
        kind, word, pos = tokens[k]
        if kind == "end":
            break
        if kind != "word" or word.upper() not in ("AND", "OR"):
            raise AttributeExpressionError(f"expected AND, OR or the end, got {word!r}", pos)
        if word.upper() == "OR":
            alternatives, conjunction = [*alternatives, conjunction], []
        k += 1
    parts = [c[0] if len(c) == 1 else Junction("AND", tuple(c)) for c in [*alternatives, conjunction]]
    return parts[0] if len(parts) == 1 else Junction("OR", tuple(parts))


def _tokens(text: str) -> list[tuple[str, str, int]]:
    found, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise AttributeExpressionError(f"unexpected character {text[pos]!r}", pos)
        if match.lastgroup != "space":
            found.append((match.lastgroup, match.group(), pos))
        pos = match.end()
    return [*found, ("end", "the end", len(text))]


def _condition(tokens: list, k: int, fields: dict) -> tuple[Condition, int]:
    """``ITEMS . FIELD = value`` from token ``k``; the condition and the next token's index."""
    from pipelines.personalize.filters.parser import Condition, Field, Literal

    shape = [("word", "ITEMS"), ("punct", "."), ("word", None), ("punct", "="), (None, None)]
    for offset, (kind, text) in enumerate(shape):
        got_kind, got, pos = tokens[min(k + offset, len(tokens) - 1)]
        if got_kind == "end" or (kind and got_kind != kind) or (text and got.upper() != text):
            wanted = {0: "ITEMS.<field>", 1: "'.' after ITEMS", 2: "a field name", 3: "'='"}.get(offset, "a value")
            raise AttributeExpressionError(f"expected {wanted}, got {got!r}", pos)
    _, name, name_pos = tokens[k + 2]
    spec = _field(fields, name, name_pos)
    value_kind, raw, value_pos = tokens[k + 4]
    if value_kind not in ("string", "number"):
        raise AttributeExpressionError(f'expected a value ("text" or a number) for ITEMS.{spec.name}, got {raw!r}',
                                       value_pos)  # fmt: skip
    value: str | float = re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.S) if value_kind == "string" else raw
    if spec.numeric:
        try:
            value = float(value)
        except ValueError:
            raise AttributeExpressionError(f"ITEMS.{spec.name} is numeric; {raw} is not a number", value_pos) from None
    else:
        value = str(value)
    return Condition(Field("Items", spec.name, name_pos), "=", (Literal(value, value_pos),), tokens[k][2]), k + 5


def _field(fields: dict, name: str, pos: int):
    spec = fields.get(name) or next((s for n, s in fields.items() if n.upper() == name.upper()), None)
    usable = sorted(n for n, s in fields.items() if _usable(s))
    if spec is None:
        raise AttributeExpressionError(f"ITEMS has no field {name!r}; its fields: {', '.join(usable)}", pos)
    if not _usable(spec):
        why = "is the item id (use an itemId query)" if spec.name == "ITEM_ID" else f"is {_kind_of(spec)}"
        raise AttributeExpressionError(f"ITEMS.{spec.name} {why}; usable fields: {', '.join(usable)}", pos)
    return spec


def _usable(spec) -> bool:
    return spec.name != "ITEM_ID" and not spec.textual and spec.type != "boolean"


def _kind_of(spec) -> str:
    return "unstructured text (textual)" if spec.textual else "boolean"


def matching_items(expression: Condition | Junction, data: InteractionData, schema: Schema) -> np.ndarray:
    """The ids of the catalog's items (``data``) the expression holds for."""
    from pipelines.personalize.filters.evaluation import Context, evaluate

    return np.asarray(data.item_ids)[evaluate(expression, Context(data, schema, None))]


class SegmentJob:
    """Answers segment queries with a trained recipe; attribute queries read ``data`` (the catalog) and ``schema``."""

    empty_ok = False
    label = "batch segments"

    def __init__(self, model: Any, num_results: int = DEFAULT_USERS, data: InteractionData | None = None,
                 schema: Schema | None = None):  # fmt: skip
        if not hasattr(model, "item_ids_"):
            raise ValueError("the model is not trained: batch segments need a fitted recipe")
        if isinstance(num_results, bool) or not isinstance(num_results, int | np.integer):
            raise ValueError(f"numResults must be an integer between 1 and {MAX_USERS}, got {num_results!r}")
        if not 1 <= num_results <= MAX_USERS:
            raise ValueError(f"numResults must be between 1 and {MAX_USERS}, got {num_results}")
        self.model, self.num_results, self.data, self.schema = model, int(num_results), data, schema
        self._parsed: dict[str, Any] = {}

    def summary(self, source: str, output: str) -> BatchSummary:
        return BatchSummary(source, output, self.num_results, None, requests=dict.fromkeys(KINDS, 0))

    def check(self, query: Any) -> dict:
        if not isinstance(query, dict):
            raise BadRequest(f"expected a JSON object, got {batch._json_type(query)}")
        unknown = [k for k in query if k not in ("itemId", "itemAttributes")]
        if unknown:
            raise BadRequest(f"unknown key(s) {unknown}; a query has itemId (item-affinity) or itemAttributes")
        if len(query) != 1:
            raise BadRequest("a query has itemId (item-affinity) or itemAttributes (item-attribute-affinity), one")
        if "itemId" in query:
            return {"itemId": batch._id_value(query["itemId"], "itemId")}
        if not isinstance(query["itemAttributes"], str):
            raise BadRequest(f"itemAttributes must be a string, got {batch._json_type(query['itemAttributes'])}")
        return dict(query)

    def kind(self, query: dict) -> str:
        return KINDS[0] if "itemId" in query else KINDS[1]

    def answer(self, query: dict) -> dict:
        if "itemId" in query:
            if query["itemId"] not in self.model.item_index_:
                raise BadRequest(f"itemId {query['itemId']!r} is unknown to the model")
            items = [query["itemId"]]
        else:
            items = self._items_of(query["itemAttributes"])
        return {"usersList": [user for user, _ in self.model.users_for_items(items, self.num_results)]}

    def _items_of(self, text: str) -> list[str]:
        if self.schema is None or self.data is None:
            raise BadRequest("itemAttributes queries read the group's ITEMS schema and imported catalog, "
                             "which this job has not got")  # fmt: skip
        if text not in self._parsed:
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            self._parsed[text] = parse_item_attributes(text, self.schema)
        index, popularity = self.model.item_index_, self.model.popularity_
        known = [i for i in matching_items(self._parsed[text], self.data, self.schema).tolist() if i in index]
        if not known:
            raise BadRequest("no item the model knows has these attributes")
        if len(known) > MAX_ATTRIBUTE_ITEMS:
            known.sort(key=lambda i: (-popularity[index[i]], index[i]))
            known = known[:MAX_ATTRIBUTE_ITEMS]
        return known


def batch_segment(model: Any, input_path: str | os.PathLike, output_path: str | os.PathLike,
                  num_results: int = DEFAULT_USERS, data: InteractionData | None = None, schema: Any = None,
                  progress: bool = True) -> dict:  # fmt: skip
    """Answer every query of a JSON Lines file into another; the job's summary (as ``batch_infer``).

    ``schema`` is the group's (a PersonalizeGroup, or anything ``schema_of`` takes); it and ``data``
    are needed only by itemAttributes queries.
    """
    return batch.run_file(_job(model, num_results, data, schema), input_path, output_path, progress)


def segments_for(model: Any, queries: Iterable[dict], output_path: str | os.PathLike,
                 num_results: int = DEFAULT_USERS, data: InteractionData | None = None, schema: Any = None,
                 progress: bool = False) -> dict:  # fmt: skip
    """The same for queries given as dicts (the DAG's, from the group's ``batch_segments`` settings)."""
    job = _job(model, num_results, data, schema)
    return batch.run_each(job, list(queries), output_path, "<batch_segments settings>", progress, unit="query")


def _job(model: Any, num_results: int, data: InteractionData | None, schema: Any) -> SegmentJob:
    if schema is not None and not isinstance(schema, dict):
        from pipelines.personalize.filters.schema import schema_of

        schema = schema_of(schema)
    return SegmentJob(model, num_results, data, schema)
