"""Filters created through the API (CreateFilter, ListFilters, DeleteFilter), kept in the serving store.

An expression is parsed and checked against its dataset group's schema when it is created,
as Personalize does, so a bad filter never reaches a request. Parsed filters are cached per
process by (name, creation time): a filter deleted and re-created under the same name in
another process is parsed again, a deleted one is gone at the next lookup.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from pipelines.serving.store import Store

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


class FilterNotFound(LookupError):
    pass


def filter_name(ref: str) -> str:
    """A filter's name from its name or an ARN ending in ``filter/<name>``."""
    return ref.rsplit("/", 1)[-1]


class FilterRegistry:
    def __init__(self, store: Store, schemas: dict[str, Any]):
        self.store, self.schemas = store, schemas  # group -> schema source (settings or data)
        self._parsed: dict[tuple[str, float], Any] = {}
        self._lock = threading.Lock()

    def create(self, name: str, group: str, expression: str) -> dict:
        from pipelines.personalize.filters.masks import Filter

        if not NAME.fullmatch(name):
            raise ValueError("name: 1 to 63 letters, digits, - or _, starting with a letter or digit")
        if group not in self.schemas:
            raise LookupError(f"datasetGroup: no Personalize group {group!r}; served groups: {sorted(self.schemas)}")
        parsed = Filter.parse(expression, self.schemas[group])  # FilterExpressionError says where and why
        created = self.store.add_filter(name, group, expression)
        with self._lock:
            self._parsed[(name, created)] = parsed
        return describe((name, group, expression, created))

    def get(self, ref: str, group: str) -> Any:
        from pipelines.personalize.filters.masks import Filter

        row = self.store.get_filter(filter_name(ref))
        if row is None or row[1] != group:
            raise FilterNotFound(f"no filter {ref!r} for dataset group {group!r}")
        name, _, expression, created = row
        with self._lock:
            parsed = self._parsed.get((name, created))
        if parsed is None:
            parsed = Filter.parse(expression, self.schemas[group])
            with self._lock:
                self._parsed[(name, created)] = parsed
        return parsed

    def delete(self, name: str) -> bool:
        return self.store.delete_filter(filter_name(name))


def describe(row: tuple) -> dict:
    name, group, expression, created = row
    return {"name": name, "filterArn": f"filter/{name}", "datasetGroup": group, "filterExpression": expression,
            "creationDateTime": created}  # fmt: skip
