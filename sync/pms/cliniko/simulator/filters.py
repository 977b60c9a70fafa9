"""Cliniko's `q[]=field:OPvalue` filters and `sort`/`order`, parsed into row predicates.

Operators by field type, per the reference README §4.1 (from the 2025 docs):
  date       = >= > <= < ? !?   (`=` takes `*` wildcards: `date_of_birth:=****-05-**`)
  date-time  >= > <= < ? !? *   (no `=`)
  numeric    = != >= > <= < ? !?  (`=` takes a list: `practitioner_id:=1,2,3`)
  string     = != ~ ~~ ? !?      (`~x` is `~~%x%`; `%` is the `~~` wildcard)
  boolean    = !=
  array      ~                   (contains)
Choices where the reference says nothing (documented in the simulator's README entry):
`~`/`~~` ignore case and `=` does not; `?`/`!?` on a string treat "" as null; a field the
endpoint does not filter on answers 400 "This column is not searchable." (issue #231); a
bad operator or value answers 400 "Invalid search query." (invented wording).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from .clock import NULL, parse_instant
from .resources import Column, Kind, Resource

NOT_SEARCHABLE = "This column is not searchable."
INVALID_QUERY = "Invalid search query."
NOT_SORTABLE = "This column is not sortable."

# Longest first, so `>=` is not read as `>` followed by "=...".
_OPERATORS = ("!?", "~~", ">=", "<=", "!=", "=", ">", "<", "~", "?", "*")
_NO_VALUE = frozenset({"?", "!?", "*"})
_ALLOWED: dict[Kind, frozenset[str]] = {
    Kind.DATE: frozenset({"=", ">=", ">", "<=", "<", "?", "!?"}),
    Kind.DATETIME: frozenset({">=", ">", "<=", "<", "?", "!?", "*"}),
    Kind.INT64: frozenset({"=", "!=", ">=", ">", "<=", "<", "?", "!?"}),
    Kind.INTEGER: frozenset({"=", "!=", ">=", ">", "<=", "<", "?", "!?"}),
    Kind.STRING: frozenset({"=", "!=", "~", "~~", "?", "!?"}),
    Kind.BOOLEAN: frozenset({"=", "!="}),
    Kind.ARRAY: frozenset({"~"}),
}


class QueryError(ValueError):
    """A request the API refuses with 400 and `{"message": ...}`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Predicate:
    field: str
    text: str  # the filter as sent, for cache keys
    test: Callable[[Any], bool]


def parse_filters(texts: Iterable[str], resource: Resource,
                  allowed: frozenset[str]) -> list[Predicate]:
    return [parse_filter(text, resource, allowed) for text in texts]


def parse_filter(text: str, resource: Resource, allowed: frozenset[str]) -> Predicate:
    name, colon, rest = text.partition(":")
    name = name.strip()
    if name not in allowed or name not in resource.by_name:
        raise QueryError(NOT_SEARCHABLE)
    if not colon:
        raise QueryError(INVALID_QUERY)
    column = resource.by_name[name]
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None or operator not in _ALLOWED[column.kind]:
        raise QueryError(INVALID_QUERY)
    value = rest[len(operator):]
    if operator in _NO_VALUE and value:
        raise QueryError(INVALID_QUERY)
    try:
        test = _BUILDERS[column.kind](operator, value)
    except (ValueError, OverflowError) as exc:
        raise QueryError(INVALID_QUERY) from exc
    return Predicate(name, text, test)


def _null_tests(operator: str, is_null: Callable[[Any], bool]) -> Callable[[Any], bool] | None:
    if operator == "?":
        return lambda v: not is_null(v)
    if operator == "!?":
        return is_null
    if operator == "*":
        return lambda v: True
    return None


def _ordered(operator: str, bound: Any, present: Callable[[Any], bool]) -> Callable[[Any], bool]:
    # SQL semantics: a comparison with null is never true, `!=` included.
    if operator == ">=":
        return lambda v: present(v) and v >= bound
    if operator == ">":
        return lambda v: present(v) and v > bound
    if operator == "<=":
        return lambda v: present(v) and v <= bound
    if operator == "<":
        return lambda v: present(v) and v < bound
    if operator == "=":
        return lambda v: present(v) and v == bound
    if operator == "!=":
        return lambda v: present(v) and v != bound
    raise ValueError(operator)


def _int_present(value: int) -> bool:
    return value != NULL


def _datetime_test(operator: str, value: str) -> Callable[[Any], bool]:
    special = _null_tests(operator, lambda v: v == NULL)
    if special:
        return special
    instant = parse_instant(value)
    # Rows hold whole seconds, so a fractional bound rounds to the equivalent whole one.
    bound = math.ceil(instant) if operator in (">=", "<") else math.floor(instant)
    return _ordered(operator, bound, _int_present)


def _number_test(operator: str, value: str) -> Callable[[Any], bool]:
    special = _null_tests(operator, lambda v: v == NULL)
    if special:
        return special
    if operator == "=" and "," in value:
        wanted = frozenset(int(part) for part in value.split(","))
        return lambda v: v in wanted
    return _ordered(operator, int(value), _int_present)


def _date_test(operator: str, value: str) -> Callable[[Any], bool]:
    special = _null_tests(operator, lambda v: not v)
    if special:
        return special
    if operator == "=" and "*" in value:
        pattern = value.strip()
        if len(pattern) != 10:
            raise ValueError(pattern)
        return lambda v: bool(v) and all(p in ("*", c) for p, c in zip(pattern, v, strict=True))
    bound = date.fromisoformat(value.strip()).isoformat()
    return _ordered(operator, bound, bool)


def _string_test(operator: str, value: str) -> Callable[[Any], bool]:
    special = _null_tests(operator, lambda v: not v)
    if special:
        return special
    if operator in ("=", "!="):
        return _ordered(operator, value, lambda v: v is not None)
    pattern = value if operator == "~~" else f"%{value}%"
    regex = re.compile(".*".join(re.escape(part) for part in pattern.split("%")),
                       re.IGNORECASE | re.DOTALL)
    return lambda v: v is not None and regex.fullmatch(v) is not None


def _boolean_test(operator: str, value: str) -> Callable[[Any], bool]:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(value)
    wanted = 1 if lowered == "true" else 0
    if operator == "=":
        return lambda v: v == wanted
    return lambda v: v != -1 and v != wanted


def _array_test(operator: str, value: str) -> Callable[[Any], bool]:
    wanted = int(value)
    return lambda v: wanted in v


_BUILDERS: dict[Kind, Callable[[str, str], Callable[[Any], bool]]] = {
    Kind.DATETIME: _datetime_test,
    Kind.INT64: _number_test,
    Kind.INTEGER: _number_test,
    Kind.DATE: _date_test,
    Kind.STRING: _string_test,
    Kind.BOOLEAN: _boolean_test,
    Kind.ARRAY: _array_test,
}


def parse_sort(sort: str | None, order: str | None, resource: Resource,
               allowed: frozenset[str]) -> tuple[tuple[str, bool], ...]:
    """`sort=a,b:desc` plus the deprecated overall `order=asc|desc`, as (column, descending)
    pairs. Default: created_at ascending. Sortable: the endpoint's filterable scalar fields
    (which columns Cliniko sorts on is UNKNOWN in the reference)."""
    if order not in (None, "", "asc", "desc"):
        raise QueryError(INVALID_QUERY)
    overall_desc = order == "desc"
    keys: list[tuple[str, bool]] = []
    for part in (sort or "created_at").split(","):
        name, _, direction = part.strip().partition(":")
        column: Column | None = resource.by_name.get(name)
        if column is None or column.kind is Kind.ARRAY or (name not in allowed and name != "created_at"):
            raise QueryError(NOT_SORTABLE)
        if direction not in ("", "asc", "desc"):
            raise QueryError(INVALID_QUERY)
        keys.append((name, direction == "desc" if direction else overall_desc))
    return tuple(keys)
