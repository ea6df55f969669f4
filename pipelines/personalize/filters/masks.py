"""Personalize's filters (CreateFilter, filterArn, filterValues) as boolean masks over the catalog.

``Filter.parse(expression, schema)`` checks an expression once (see ``parser``);
``filter.bind(filterValues)`` puts a request's values in place of its placeholders; and
``bound.item_mask(data, user_index)`` says which items (by ``InteractionData`` index) the
user may be recommended. ``recommend_filtered`` and ``related_items_filtered`` apply a
filter around any recipe's ``recommend``/``related_items``, so recipes know nothing of filters.

Semantics, following Personalize's documentation:

- ``Items`` conditions test item metadata; a multi-valued categorical field (a list, or text
  split on ``|``) matches IN or = if any of its values does. NOT IN and != are the negation of
  IN and =, so an item without the value matches them; <, <=, >, >= never match a missing value.
- ``Interactions.EVENT_TYPE IN (...)`` is the set of items the requesting user interacted with
  by those event types (matched ignoring case; ``"*"`` is every type), from the user's
  ``INTERACTIONS_PER_EVENT_TYPE`` most recent events of each type, as Personalize's quota.
- ``IF CurrentUser.F ...``: the expression applies only to users whose metadata satisfies it.
- Chained expressions: included = the union of INCLUDE results (everything if there is no
  INCLUDE that applies); the filter keeps included items minus the union of EXCLUDE results.
- filterValues: a value is a comma-separated list of double-quoted strings (``"\\"a\\",\\"b\\""``,
  as the API takes them; numbers may go bare) or a Python list of strings. An INCLUDE
  expression needs all its placeholders; in an EXCLUDE expression a condition whose value is
  not given is left out, and an expression left without conditions is skipped.
- ``UserID`` filters (user segments) select users: ``bound.user_mask(data)``.

Masks of conditions that depend on neither the user nor the current item are computed once
per (filter, bound values, data) and reused: a request then costs the user's own history and
a few vectorized operations over the catalog. Masks read the catalog and interactions of the
``data`` given, plus the user's live events where the caller passes them (``live``: what
PutEvents stored since the snapshot, with event types). An item is in the catalog if ``data``
holds it: the serving API grows its data with items from PutItems and items first seen in
PutEvents (``pipelines.serving.catalog.grow``), so those pass filters as imported items do.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from pipelines.personalize.base import MAX_RESULTS
from pipelines.personalize.data import InteractionData
from pipelines.personalize.filters.evaluation import ORDERING, Context, evaluate, field_spec, uses_current_item
from pipelines.personalize.filters.parser import (
    Condition,
    Expression,
    FilterExpressionError,
    Junction,
    Literal,
    Node,
    Placeholder,
    conditions,
    parse_expression,
    unquote,
)
from pipelines.personalize.filters.schema import Schema, check_expressions, schema_of

INTERACTIONS_PER_EVENT_TYPE = 100  # Personalize's (adjustable) quota of recent events a filter reads
MAX_FILTER_VALUES = 25  # entries in filterValues
MAX_VALUE_LENGTH = 3000  # characters of one entry's value
BOUND_CACHE_SIZE = 256
_KEY = re.compile(r"[A-Za-z0-9_]{1,50}")
_VALUE = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))\s*', re.S)

__all__ = [
    "BoundFilter",
    "Filter",
    "FilterExpressionError",
    "FilterValuesError",
    "apply_filter",
    "recommend_filtered",
    "related_items_filtered",
    "schema_of",
]


class FilterValuesError(ValueError):
    """filterValues that do not fit the filter: the placeholder and why."""


class Filter:
    """A parsed, schema-checked filter expression; ``bind`` it to a request's filterValues."""

    def __init__(self, expression: str, expressions: tuple[Expression, ...], schema: Schema, interaction_limit: int):
        self.expression, self.expressions, self.schema = expression, expressions, schema
        self.interaction_limit = interaction_limit
        self.target = expressions[0].target
        self.placeholders: dict[str, list[tuple[Expression, Condition]]] = {}
        for expr in expressions:
            for condition in (*conditions(expr.where), *expr.when):
                for value in condition.values:
                    if isinstance(value, Placeholder):
                        self.placeholders.setdefault(value.name, []).append((expr, condition))
        self.uses_current_item = any(uses_current_item(e) for e in expressions)
        self._bound: dict[tuple, BoundFilter] = {}

    @classmethod
    def parse(cls, expression: str, data_schema: Any, interaction_limit: int = INTERACTIONS_PER_EVENT_TYPE) -> Filter:
        """Parse and check ``expression`` against ``data_schema`` (see ``schema.schema_of``)."""
        schema = schema_of(data_schema)
        expressions = parse_expression(expression, schema)
        check_expressions(expressions, schema, expression)
        return cls(expression, expressions, schema, interaction_limit)

    def bind(self, values: Mapping[str, Any] | None = None) -> BoundFilter:
        """The filter with ``values`` (filterValues) in place of its placeholders; cached per values."""
        parsed = self._parse_values(values or {})
        key = tuple(sorted(parsed.items()))
        bound = self._bound.get(key)
        if bound is None:
            expressions = tuple(e for e in (self._bind(expr, parsed) for expr in self.expressions) if e is not None)
            bound = BoundFilter(self, parsed, expressions)
            if len(self._bound) >= BOUND_CACHE_SIZE:
                self._bound.pop(next(iter(self._bound)))
            self._bound[key] = bound
        return bound

    def _parse_values(self, values: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
        if not isinstance(values, Mapping):
            raise FilterValuesError(f"filterValues must map placeholder names to values, got {type(values).__name__}")
        if len(values) > MAX_FILTER_VALUES:
            raise FilterValuesError(f"filterValues has {len(values)} entries; at most {MAX_FILTER_VALUES}")
        parsed = {}
        for key, raw in values.items():
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                raise FilterValuesError(f"filterValues key {key!r}: a placeholder name without $ (A-Z, 0-9, _)")
            if key not in self.placeholders:
                known = sorted(self.placeholders)
                raise FilterValuesError(f"filterValues names {key!r}; the filter's placeholders are {known}")
            parsed[key] = _split_values(key, raw)
        for name, uses in self.placeholders.items():
            if name not in parsed and any(expr.action == "INCLUDE" for expr, _ in uses):
                raise FilterValuesError(f"filterValues lacks {name!r}, which an INCLUDE expression needs")
        return parsed

    def _bind(self, expr: Expression, values: dict[str, tuple[str, ...]]) -> Expression | None:
        where = _bind_node(expr.where, values, self.schema)
        if where is None:
            return None
        when = tuple(c for c in (_bind_node(c, values, self.schema) for c in expr.when) if c is not None)
        return replace(expr, where=where, when=when)

    def __repr__(self) -> str:
        return f"Filter({self.expression!r})"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_bound": {}}  # bound filters hold per-data caches, which do not pickle


class BoundFilter:
    """A filter with a request's values: masks over items (ItemID filters) or users (UserID filters)."""

    def __init__(self, filter: Filter, values: dict[str, tuple[str, ...]], expressions: tuple[Expression, ...]):
        self.filter, self.values, self.expressions = filter, values, expressions
        self._static: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # data -> {node key: mask}

    def __str__(self) -> str:
        return " | ".join(map(str, self.expressions))

    def item_mask(
        self,
        data: InteractionData,
        user_index: int | None = None,
        current_item: int | None = None,
        live: Sequence[tuple[str, str, float]] | None = None,
    ) -> np.ndarray:
        """Which of ``data``'s items the user (index; None if unknown) may get; ``current_item`` in related items.

        ``live`` is the user's events stored since the snapshot, ``(item_id, event_type, sent_at)``,
        which Interactions conditions read beside the snapshot's.
        """
        if self.filter.target != "ItemID":
            raise ValueError(f"{self.filter!r} selects users: use user_mask")
        if current_item is None and self.filter.uses_current_item:
            raise ValueError("this filter compares with CurrentItem: it applies to related-items requests only")
        context = Context(data, self.filter.schema, self.filter.interaction_limit, user_index, current_item, live=live)
        return self._combine(data.n_items, context)

    def user_mask(self, data: InteractionData) -> np.ndarray:
        """Which of ``data``'s users a UserID filter keeps (a user segment)."""
        if self.filter.target != "UserID":
            raise ValueError(f"{self.filter!r} filters items: use item_mask")
        return self._combine(data.n_users, Context(data, self.filter.schema, None, users=True))

    def _combine(self, size: int, context: Context) -> np.ndarray:
        included, excluded = [], []
        for k, expr in enumerate(self.expressions):
            if expr.when and not self._user_qualifies(context, k, expr):
                continue  # the IF does not hold: the expression does not apply to this user
            per_request = (expr.dataset == "Interactions" and not context.users) or uses_current_item(expr)
            mask = evaluate(expr.where, context) if per_request else self._cached(context, ("where", k), expr.where)
            (included if expr.action == "INCLUDE" else excluded).append(mask)
        keep = np.logical_or.reduce(included) if included else np.ones(size, dtype=bool)
        if excluded:
            keep &= ~np.logical_or.reduce(excluded)
        return keep

    def _user_qualifies(self, context: Context, k: int, expr: Expression) -> bool:
        u = context.user_index
        if u is None or not 0 <= u < context.data.n_users:
            return False
        return all(self._cached(context, ("if", k, i), c)[u] for i, c in enumerate(expr.when))

    def _cached(self, context: Context, key: tuple, node: Node) -> np.ndarray:
        per_data = self._static.setdefault(context.data, {})
        if key not in per_data:
            per_data[key] = evaluate(node, context)
        return per_data[key]


def apply_filter(
    recommend: Callable[[int, list[str]], list[tuple[str, float]]],
    bound: BoundFilter,
    data: InteractionData,
    n: int = 25,
    user_id: str | None = None,
    current_item_id: str | None = None,
    exclude: Iterable[str] | None = None,
    live: Sequence[tuple[str, str, float]] | None = None,
) -> list[tuple[str, float]]:
    """The best ``n`` of ``recommend(k, exclude)`` (a model's ranked list) that pass the filter.

    First ask for enough candidates that about 2n should pass at the filter's pass rate; if
    fewer pass, ask once more with every rejected item excluded, so the model itself fills the
    list from what passes. Either way the result is the model's order restricted to the
    filter, the same as filtering its full ranking; it is shorter than n only if fewer pass.
    """
    user = None if user_id is None else data.user_index.get(str(user_id))
    current = None if current_item_id is None else data.item_index.get(str(current_item_id), -1)
    mask = bound.item_mask(data, user, current, live)
    allowed = int(mask.sum())
    exclude = list(exclude or ())
    if allowed == 0:
        return []
    index = data.item_index

    def passes(item_id: str) -> bool:
        i = index.get(item_id)
        return i is not None and bool(mask[i])

    wanted = 2 * n * data.n_items / allowed
    if wanted <= MAX_RESULTS:
        k = max(n, math.ceil(wanted))
        candidates = recommend(k, exclude)
        kept = [pair for pair in candidates if passes(pair[0])]
        if len(kept) >= n or len(candidates) < k:  # enough, or the model ran out of items
            return kept[:n]
    banned = exclude + data.item_ids[~mask].tolist()
    return [pair for pair in recommend(n, banned) if passes(pair[0])][:n]


def recommend_filtered(
    model: Any,
    bound: BoundFilter,
    data: InteractionData,
    user_id: str,
    n: int = 25,
    exclude: Iterable[str] | None = None,
    exclude_seen: bool = True,
    context: Mapping[str, str] | None = None,
    live: Sequence[tuple[str, str, float]] | None = None,
) -> list[tuple[str, float]]:
    """GetRecommendations with a filter: ``model.recommend`` restricted to what ``bound`` lets the user see.

    ``context`` goes to the model unchanged (DeepFM scores by it), so a filter changes which
    items may come, never how they are scored.
    """

    def recommend(k: int, banned: list[str]) -> list[tuple[str, float]]:
        return model.recommend(user_id, n=k, context=context, exclude=banned, exclude_seen=exclude_seen)

    return apply_filter(recommend, bound, data, n=n, user_id=user_id, exclude=exclude, live=live)


def related_items_filtered(
    model: Any,
    bound: BoundFilter,
    data: InteractionData,
    item_id: str,
    n: int = 25,
    user_id: str | None = None,
    exclude: Iterable[str] | None = None,
    live: Sequence[tuple[str, str, float]] | None = None,
) -> list[tuple[str, float]]:
    """Related items with a filter; ``item_id`` is CurrentItem, ``user_id`` (optional) the requesting user."""

    def related(k: int, banned: list[str]) -> list[tuple[str, float]]:
        return model.related_items(item_id, n=k, exclude=banned)

    return apply_filter(related, bound, data, n=n, user_id=user_id, current_item_id=item_id, exclude=exclude,
                        live=live)  # fmt: skip


# Binding values.
def _split_values(key: str, raw: Any) -> tuple[str, ...]:
    """One filterValues entry as literal strings; nothing in it is ever parsed as an expression."""
    if isinstance(raw, str):
        if len(raw) > MAX_VALUE_LENGTH:
            raise FilterValuesError(f"filterValues[{key!r}] has {len(raw)} characters; at most {MAX_VALUE_LENGTH}")
        values, pos = [], 0
        while True:
            match = _VALUE.match(raw, pos)
            if match is None:
                raise FilterValuesError(
                    f"filterValues[{key!r}], character {pos + 1}: expected a double-quoted value, "
                    'as in "\\"Comedy\\",\\"Drama\\"" (quotes inside a value are escaped with \\)'
                )
            values.append(unquote(f'"{match[1]}"') if match[1] is not None else match[2])
            pos = match.end()
            if pos == len(raw):
                return tuple(values)
            if raw[pos] != ",":
                raise FilterValuesError(f"filterValues[{key!r}], character {pos + 1}: expected , between values")
            pos += 1
    if isinstance(raw, list | tuple) and raw and all(isinstance(v, str) for v in raw):
        if sum(len(v) + 3 for v in raw) > MAX_VALUE_LENGTH:
            raise FilterValuesError(f"filterValues[{key!r}] is longer than {MAX_VALUE_LENGTH} characters")
        return tuple(raw)
    raise FilterValuesError(f"filterValues[{key!r}]: expected quoted values in a string or a list of strings")


def _bind_node(node: Node, values: dict[str, tuple[str, ...]], schema: Schema) -> Node | None:
    """``node`` with placeholders replaced by literals; None where a placeholder has no value (EXCLUDE)."""
    if isinstance(node, Junction):
        parts = tuple(p for p in (_bind_node(part, values, schema) for part in node.parts) if p is not None)
        return None if not parts else parts[0] if len(parts) == 1 else Junction(node.op, parts)
    bound: list = []
    for value in node.values:
        if not isinstance(value, Placeholder):
            bound.append(value)
        elif value.name not in values:
            return None
        else:
            numeric = field_spec(schema, node.field).numeric or node.op in ORDERING
            bound.extend(Literal(_typed(v, numeric, value, node), value.pos) for v in values[value.name])
    if node.op not in ("IN", "NOT IN") and len(bound) != 1:
        raise FilterValuesError(f"{node.field} {node.op} compares with one value; got {len(bound)}")
    return replace(node, values=tuple(bound))


def _typed(text: str, numeric: bool, placeholder: Placeholder, node: Condition) -> str | float:
    if not numeric:
        return text
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise FilterValuesError(f"filterValues[{placeholder.name!r}]: {node.field} is numeric, got {text!r}")
    return number
