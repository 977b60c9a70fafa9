"""Paging and query-parameter validation shared by every list endpoint.

A list endpoint reads its parameters through these helpers, so a bad `limit`, `offset`,
`search` or date is the same 400 `VALIDATION_ERROR` everywhere, names the parameter in
`details`, and is documented once (`page_parameters()`, `SEARCH_PARAMETER`, `datetime_parameter`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from routiq.api.envelope import page
from routiq.api.errors import ValidationFailed

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_OFFSET = 1_000_000_000
MAX_TEXT_LENGTH = 200

# ASCII digits only: `int()` would also take "1_0", " 7", "+3" and non-ASCII digits.
_UNSIGNED = re.compile(r"[0-9]{1,20}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TIEBREAKS = {"pk", "-pk", "id", "-id"}


def invalid(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid query parameter `{name}`.", details={name: [message]})


@dataclass(frozen=True)
class PageRequest:
    limit: int
    offset: int

    @classmethod
    def from_request(cls, request: Request, *, default_limit: int = DEFAULT_LIMIT) -> PageRequest:
        return cls(
            limit=_integer(request, "limit", default=default_limit, least=1, most=MAX_LIMIT),
            offset=_integer(request, "offset", default=0, least=0, most=MAX_OFFSET),
        )


def _integer(request: Request, name: str, *, default: int, least: int, most: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _UNSIGNED.fullmatch(raw) or not least <= int(raw) <= most:
        raise invalid(name, f"Must be an integer from {least} to {most}.")
    return int(raw)


def paginate(
    request: Request,
    queryset: QuerySet,
    *,
    key: str,
    ordering: Sequence[str],
    serialize: Callable[[Iterable[Any]], list[Any]],
    organization_id: str | None,
    default_limit: int = DEFAULT_LIMIT,
) -> Response:
    """One page of `queryset` in the list envelope: `count`, `total`, `limit`, `offset`.

    `pk` is appended to `ordering` unless it is there already, so rows with equal sort keys
    keep one order across requests and paging never repeats or skips a row.
    """
    window = PageRequest.from_request(request, default_limit=default_limit)
    order = list(ordering)
    if not _TIEBREAKS.intersection(order):
        order.append("pk")
    ordered = queryset.order_by(*order)
    total = ordered.count()
    rows = list(ordered[window.offset : window.offset + window.limit]) if window.offset < total else []
    return page(
        key,
        serialize(rows),
        total=total,
        limit=window.limit,
        offset=window.offset,
        organization_id=organization_id,
    )


def query_text(request: Request, name: str, *, max_length: int = MAX_TEXT_LENGTH) -> str | None:
    """A free-text query parameter, trimmed; None when absent or blank.

    Control characters are refused: PostgreSQL cannot store NUL, and a filter never needs them.
    """
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if len(raw) > max_length:
        raise invalid(name, f"At most {max_length} characters.")
    if _CONTROL.search(raw):
        raise invalid(name, "Control characters are not allowed.")
    return raw.strip() or None


def search_filter(queryset: QuerySet, text: str | None, fields: Sequence[str]) -> QuerySet:
    """Rows where any of `fields` contains `text` literally, ignoring case.

    `icontains` escapes `%`, `_` and `\\` itself, so user text is never a LIKE pattern.
    """
    if not text:
        return queryset
    condition = Q()
    for field in fields:
        condition |= Q(**{f"{field}__icontains": text})
    return queryset.filter(condition)


_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def query_bool(request: Request, name: str, *, default: bool = False) -> bool:
    """`true`/`false` (or 1/0); anything else is a 400 naming `name`."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw not in _BOOLEANS:
        raise invalid(name, "Must be true or false.")
    return _BOOLEANS[raw]


def query_integer(request: Request, name: str, *, default: int, least: int, most: int) -> int:
    """A whole number from `least` to `most`; anything else is a 400 naming `name`."""
    return _integer(request, name, default=default, least=least, most=most)


def query_datetime(request: Request, name: str) -> datetime | None:
    """An ISO 8601 date-time query parameter with a UTC offset (`Z` or `+10:00`)."""
    if request.query_params.get(name) is None:
        return None
    # Present but blank is malformed too (unlike a blank text filter, which means "any").
    raw = query_text(request, name, max_length=64) or ""
    try:
        # RFC 3339 allows lower-case `t` and `z`; Django's parser wants them upper-case.
        moment = parse_datetime(raw.upper())
    except (ValueError, OverflowError):
        moment = None
    if moment is None:
        raise invalid(name, "Must be an ISO 8601 date-time, e.g. 2026-03-01T09:00:00Z.")
    if timezone.is_naive(moment):
        raise invalid(name, "Must include a UTC offset, e.g. Z or +10:00.")
    # In UTC: PostgreSQL refuses offsets beyond 15:59, which RFC 3339 allows.
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # within an offset of year 1 or 9999: earlier or later than any row
        return datetime.min.replace(tzinfo=UTC) if moment.year == 1 else datetime.max.replace(tzinfo=UTC)


# --- OpenAPI: the same parameters, documented once -----------------------------------------
def page_parameters(default_limit: int = DEFAULT_LIMIT) -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default_limit},
            description=f"Items per page, 1 to {MAX_LIMIT}.",
        ),
        OpenApiParameter(
            "offset",
            {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
            description="Items to skip before the page starts.",
        ),
    ]


def text_parameter(name: str, description: str, *, max_length: int = MAX_TEXT_LENGTH) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        {"type": "string", "maxLength": max_length, "pattern": r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"},
        description=description,
    )


def bool_parameter(name: str, description: str, *, default: bool = False) -> OpenApiParameter:
    return OpenApiParameter(
        name, {"type": "string", "enum": ["true", "false", "1", "0"], "default": str(default).lower()},
        description=description,
    )


def integer_parameter(
    name: str, description: str, *, default: int, least: int, most: int
) -> OpenApiParameter:
    schema = {"type": "integer", "minimum": least, "maximum": most, "default": default}
    return OpenApiParameter(name, schema, description=description)


def datetime_parameter(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, {"type": "string", "format": "date-time"}, description=description)


SEARCH_PARAMETER = text_parameter(
    "search",
    f"Case-insensitive text to find, matched literally (`%` and `_` are plain characters);"
    f" trimmed, at most {MAX_TEXT_LENGTH} characters.",
)
