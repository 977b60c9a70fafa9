"""One resource's rows: encoded JSON per record plus compact per-column filter values.

Rows are kept in id order (records are appended with rising ids and new ids only grow), so
an id lookup is a bisection. A hard-deleted row keeps its slot with no record. Each column
is an `array('q')` for integers and timestamps (NULL for unset), so a 200,000-appointment
clinic costs a few MB beyond its JSON. Query results (row numbers, filtered and sorted) are
memoised per table version, so walking the pages of one listing filters and sorts once.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from .clock import NULL, epoch_of
from .filters import Predicate
from .resources import Column, Kind, Resource, View

_CACHED_QUERIES = 64
# ASCII output (non-ASCII as \\u escapes, the same JSON to any parser) encodes ~25% faster.
_encode = json.JSONEncoder(separators=(",", ":")).encode


# Link URLs repeat (every appointment of a practitioner links the same one): parse each once.
_LINK_IDS: dict[str, int] = {}


def link_id(value: Any) -> int:
    """The id at the end of `{"links": {"self": ".../patients/82"}}`; NULL when absent."""
    if not isinstance(value, dict):
        return NULL
    href = (value.get("links") or {}).get("self") or ""
    found = _LINK_IDS.get(href)
    if found is None:
        tail = href.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        found = int(tail) if tail.isdigit() else NULL
        if len(_LINK_IDS) < 1_000_000:
            _LINK_IDS[href] = found
    return found


def _number(value: Any) -> int:
    return NULL if value is None or value == "" else int(value)


def _boolean(value: Any) -> int:
    return -1 if value is None else int(bool(value))


def _id_tuple(value: Any) -> tuple[int, ...]:
    return tuple(int(item) for item in value or ())


def _text(value: Any) -> Any:
    return value or None  # "" reads as null


def _converter(column: Column) -> Callable[[Any], Any]:
    """Record value -> column value."""
    if column.link:
        return link_id
    return {
        Kind.DATETIME: epoch_of, Kind.INT64: _number, Kind.INTEGER: _number,
        Kind.BOOLEAN: _boolean, Kind.ARRAY: _id_tuple,
    }.get(column.kind, _text)


def _new_column(column: Column) -> Any:
    if column.kind in (Kind.DATETIME, Kind.INT64, Kind.INTEGER):
        return array("q")
    if column.kind is Kind.BOOLEAN:
        return array("b")
    return []


class Table:
    def __init__(self, resource: Resource, rewrite: Callable[[str], str]) -> None:
        self.resource = resource
        self._rewrite = rewrite  # the generator's API root -> the simulator's
        self.ids = array("q")
        self.blobs: list[bytes | None] = []
        self.columns: dict[str, Any] = {c.name: _new_column(c) for c in resource.columns}
        self._extract = [(self.columns[c.name], c.key, _converter(c)) for c in resource.columns]
        self.version = 0
        self.live = 0
        self._queries: OrderedDict[tuple[Any, ...], array] = OrderedDict()

    # --- rows ------------------------------------------------------------------------------
    def encode(self, record: dict[str, Any]) -> bytes:
        return self._rewrite(_encode(record)).encode()

    def append(self, record: dict[str, Any]) -> int:
        record_id = int(record["id"])
        if self.ids and record_id <= self.ids[-1]:
            raise ValueError(f"{self.resource.name} id {record_id} is not above {self.ids[-1]}")
        self.ids.append(record_id)
        self.blobs.append(self.encode(record))
        get = record.get
        for values, key, convert in self._extract:
            values.append(convert(get(key)))
        self.live += 1
        self.version += 1
        return len(self.ids) - 1

    def replace(self, row: int, record: dict[str, Any]) -> None:
        self.blobs[row] = self.encode(record)
        for values, key, convert in self._extract:
            values[row] = convert(record.get(key))
        self.version += 1

    def purge(self, row: int) -> None:
        """Hard delete: the record vanishes; nothing anywhere says it existed."""
        if self.blobs[row] is not None:
            self.blobs[row] = None
            self.live -= 1
            self.version += 1

    def row_of(self, record_id: int) -> int | None:
        row = bisect_left(self.ids, record_id)
        if row < len(self.ids) and self.ids[row] == record_id and self.blobs[row] is not None:
            return row
        return None

    def record(self, row: int) -> dict[str, Any]:
        blob = self.blobs[row]
        if blob is None:
            raise KeyError(row)
        return json.loads(blob)

    def next_id(self) -> int:
        return (self.ids[-1] if self.ids else 0) + 1

    def rows_where(self, column: str, value: Any) -> list[int]:
        values = self.columns[column]
        blobs = self.blobs
        return [row for row, v in enumerate(values) if v == value and blobs[row] is not None]

    # --- queries ---------------------------------------------------------------------------
    def visible(self, row: int, view: View, predicates: Sequence[Predicate]) -> bool:
        """Whether one row passes a view's scope and the filters (single-record GETs)."""
        return bool(self._select([row], view, predicates))

    def select(self, view: View, predicates: Sequence[Predicate],
               sort: tuple[tuple[str, bool], ...]) -> array:
        key = (view.suffix, tuple(sorted(p.text for p in predicates)), sort, self.version)
        cached = self._queries.get(key)
        if cached is not None:
            self._queries.move_to_end(key)
            return cached
        rows = [row for row, blob in enumerate(self.blobs) if blob is not None]
        rows = self._select(rows, view, predicates)
        for name, descending in reversed(sort):
            # Stable sorts from the last key to the first; rows start in id order, so equal
            # keys stay in id order.
            rows.sort(key=self._sort_key(name), reverse=descending)
        result = array("l", rows)
        self._queries[key] = result
        if len(self._queries) > _CACHED_QUERIES:
            self._queries.popitem(last=False)
        return result

    def _select(self, rows: list[int], view: View, predicates: Sequence[Predicate]) -> list[int]:
        filtered = {p.field for p in predicates}
        for state in self.resource.hidden_states:
            # A row in a hidden state shows only when asked for: by the view's own state, or
            # by any filter on that state field (`archived_at:*`, `cancelled_at:>=T`, ...).
            if state == view.require or state in view.reveal or state in filtered:
                continue
            values = self.columns[state]
            rows = [row for row in rows if values[row] == NULL]
        if view.require is not None:
            values = self.columns[view.require]
            rows = [row for row in rows if values[row] != NULL]
        if view.active is not None:
            values = self.columns["active"]
            wanted = int(view.active)
            rows = [row for row in rows if values[row] == wanted]
        for predicate in predicates:
            values = self.columns[predicate.field]
            test = predicate.test
            rows = [row for row in rows if test(values[row])]
        return rows

    def _sort_key(self, name: str) -> Callable[[int], Any]:
        values = self.columns[name]
        if isinstance(values, array):
            return values.__getitem__
        return lambda row: values[row] or ""
