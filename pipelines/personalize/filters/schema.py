"""What a filter expression may name and combine: the dataset group's schema and Personalize's rules.

Filters are checked against the schema when they are created, as Personalize's CreateFilter
does, so the schema comes in whatever form the caller holds: the group's settings
(``PersonalizeGroup``), a mapping of dataset to fields (Avro-style field lists, name → type,
or bare names when types are unknown), or the ``InteractionData`` itself, whose columns and
dtypes stand in for a schema. Every form becomes one ``Schema``: dataset type (INTERACTIONS,
ITEMS, USERS) → field name → ``FieldSpec``.

``check_expressions`` applies the rules Personalize documents: Interactions conditions name
EVENT_TYPE with IN; the conditions of one expression use one dataset (chain expressions with
``|`` to combine Items and Interactions); CurrentItem compares with Items fields of item
filters; NOT IN takes no placeholder; text fields take IN, NOT IN, = and !=, numeric fields
the comparisons; textual and boolean fields cannot be filtered on; at most 10 distinct fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipelines import domains as d
from pipelines.personalize.filters.parser import (
    SCHEMA_KEY,
    Condition,
    Expression,
    Field,
    FilterExpressionError,
    Literal,
    Placeholder,
    conditions,
)

NUMERIC_TYPES = ("integer", "float", "timestamp")
MAX_FIELDS = 10


@dataclass(frozen=True)
class FieldSpec:
    """One field; ``type`` is a schema type (string, integer, float, timestamp, boolean) or 'unknown'."""

    name: str
    type: str = "unknown"
    categorical: bool = False
    textual: bool = False

    @property
    def numeric(self) -> bool:
        return self.type in NUMERIC_TYPES


Schema = dict[str, dict[str, FieldSpec]]


def schema_of(source: Any) -> Schema:
    """The schema of a PersonalizeGroup, an InteractionData, or a mapping of dataset to fields."""
    if hasattr(source, "item_metadata") and hasattr(source, "event_type_names"):
        return _from_data(source)
    datasets = getattr(source, "datasets", None)
    if datasets is not None and not isinstance(source, Mapping):
        source = {kind: getattr(datasets, kind, None) for kind in d.PERSONALIZE_DATASET_TYPES}
    if not isinstance(source, Mapping):
        raise TypeError(f"expected a dataset group schema, got {type(source).__name__}")
    schema: Schema = {}
    for key, fields in source.items():
        kind = str(key).upper()
        if kind not in d.PERSONALIZE_DATASET_TYPES:
            raise ValueError(f"unknown dataset {key!r} in the schema; expected {list(d.PERSONALIZE_DATASET_TYPES)}")
        if fields is not None:
            schema[kind] = {spec.name: spec for spec in _fields(fields)}
    if d.INTERACTIONS not in schema:
        raise ValueError("the schema has no INTERACTIONS dataset")
    return schema


def _fields(fields: Any) -> Iterable[FieldSpec]:
    if hasattr(fields, "fields"):  # DatasetSettings
        fields = fields.fields
    elif isinstance(fields, Mapping) and "fields" in fields:  # an Avro record
        fields = fields["fields"]
    if isinstance(fields, Mapping):  # name -> type, FieldSpec or options
        fields = [
            v if isinstance(v, FieldSpec) else {"name": k, **v} if isinstance(v, Mapping) else {"name": k, "type": v}
            for k, v in fields.items()
        ]
    for item in fields:
        if isinstance(item, FieldSpec):
            yield item
        elif isinstance(item, str):
            yield FieldSpec(item)
        elif isinstance(item, Mapping):
            yield FieldSpec(
                str(item["name"]), _type(item.get("type")), bool(item.get("categorical")), bool(item.get("textual"))
            )
        else:  # an Attribute from the settings
            yield FieldSpec(item.name, _type(item.type), bool(item.categorical), bool(item.textual))


def _type(value: Any) -> str:
    if isinstance(value, FieldSpec):
        return value.type
    if isinstance(value, list | tuple):  # Avro's optional field: ["null", "string"]
        value = next((v for v in value if v not in ("null", None)), None)
    return d.FIELD_TYPES.get(str(value), "unknown") if value is not None else "unknown"


def _from_data(data: Any) -> Schema:
    interactions = {name: FieldSpec(name, "string") for name in ("USER_ID", "ITEM_ID")}
    interactions["TIMESTAMP"] = FieldSpec("TIMESTAMP", "integer")
    if data.event_type_names:
        interactions["EVENT_TYPE"] = FieldSpec("EVENT_TYPE", "string", categorical=True)
    if data.event_values is not None and not np.isnan(data.event_values).all():
        interactions["EVENT_VALUE"] = FieldSpec("EVENT_VALUE", "float")
    if data.context is not None:
        interactions.update({str(c): _inferred(str(c), data.context[c]) for c in data.context.columns})
    schema: Schema = {d.INTERACTIONS: interactions}
    for kind, key, frame in ((d.ITEMS, "ITEM_ID", data.item_metadata), (d.USERS, "USER_ID", data.user_metadata)):
        if frame is not None:
            schema[kind] = {
                str(c): FieldSpec(key, "string") if c == key else _inferred(str(c), frame[c]) for c in frame
            }
    return schema


def _inferred(name: str, column: pd.Series) -> FieldSpec:
    """A field's type from its dtype; text columns count as categorical, as Personalize's metadata strings are."""
    if pd.api.types.is_bool_dtype(column):
        return FieldSpec(name, "boolean")
    if pd.api.types.is_datetime64_any_dtype(column):
        return FieldSpec(name, "timestamp")
    if pd.api.types.is_integer_dtype(column):
        return FieldSpec(name, "integer")
    if pd.api.types.is_float_dtype(column):
        return FieldSpec(name, "float")
    return FieldSpec(name, "string", categorical=True)


def check_expressions(expressions: tuple[Expression, ...], schema: Schema, text: str) -> None:
    """Raise FilterExpressionError, with the position in ``text``, where an expression breaks a rule."""
    _Rules(schema, text).check_all(expressions)


class _Rules:
    def __init__(self, schema: Schema, text: str):
        self.schema, self.text = schema, text

    def error(self, reason: str, pos: int) -> FilterExpressionError:
        return FilterExpressionError(reason, self.text, pos)

    def check_all(self, expressions: tuple[Expression, ...]) -> None:
        for expression in expressions:
            self.check(expression)
            if expression.target != expressions[0].target:
                reason = f"chained expressions filter one kind: {expressions[0].target}, not {expression.target}"
                raise self.error(reason, expression.pos)
        fields = {(c.field.dataset, c.field.name) for e in expressions for c in (*conditions(e.where), *e.when)}
        if len(fields) > MAX_FIELDS:
            raise self.error(f"{len(fields)} distinct fields; a filter may use {MAX_FIELDS}", 0)

    def check(self, expression: Expression) -> None:
        """Personalize's rules that span a whole expression, and types against the schema."""
        first = next(conditions(expression.where))
        allowed = ("Items", "Interactions") if expression.target == "ItemID" else ("Users", "Interactions")
        if first.field.dataset not in allowed:
            hint = " (filter items by user fields with IF CurrentUser.FIELD)" if first.field.dataset == "Users" else ""
            raise self.error(f"{expression.target} filters take {' or '.join(allowed)} conditions{hint}", first.pos)
        for condition in conditions(expression.where):
            if condition.field.dataset != first.field.dataset:
                raise self.error(
                    f"one expression filters on one dataset; this one started with {first.field.dataset}: "
                    "chain another expression with | instead",
                    condition.pos,
                )
            self.check_condition(condition, expression.target)
        for condition in expression.when:
            self.check_condition(condition, expression.target)

    def check_condition(self, condition: Condition, target: str) -> None:
        spec = self.spec(condition.field)
        subject = str(condition.field)
        if spec.textual or spec.type == "boolean":
            kind = "textual" if spec.textual else "boolean"
            raise self.error(f"{subject} is a {kind} field, which filters cannot use", condition.field.pos)
        if condition.field.dataset == "Interactions":
            if spec.name != "EVENT_TYPE":
                raise self.error("Interactions conditions filter on EVENT_TYPE only", condition.field.pos)
            if condition.op != "IN":
                raise self.error("Interactions.EVENT_TYPE takes IN (the user's events of those types)", condition.pos)
        if spec.numeric and condition.op in ("IN", "NOT IN"):
            raise self.error(f"{subject} is numeric: compare it with =, !=, <, <=, > or >=", condition.pos)
        if spec.type == "string" and condition.op not in ("IN", "NOT IN", "=", "!="):
            raise self.error(
                f"{subject} is text: use IN, NOT IN, = or !=; {condition.op} compares numbers", condition.pos
            )
        for value in condition.values:
            if isinstance(value, Placeholder) and condition.op == "NOT IN":
                raise self.error("NOT IN takes no placeholder: use IN and the opposite action", value.pos)
            if isinstance(value, Field):
                if target != "ItemID" or condition.field.dataset != "Items":
                    raise self.error("CurrentItem is compared with Items fields of item filters", value.pos)
                other = self.spec(value)
                if other.numeric != spec.numeric:
                    raise self.error(f"{subject} and {value} are not both numeric or both text", value.pos)
            if isinstance(value, Literal):
                if spec.numeric and isinstance(value.value, str):
                    raise self.error(f"{subject} is numeric: expected a number, not text", value.pos)
                if spec.type == "string" and not isinstance(value.value, str):
                    raise self.error(f"{subject} is text: quote the value, as in {Literal(str(value))}", value.pos)

    def spec(self, ref: Field) -> FieldSpec:
        return self.schema[SCHEMA_KEY[ref.dataset]][ref.name]
