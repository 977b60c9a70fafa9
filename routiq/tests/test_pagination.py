"""The paging and query-parameter helpers, apart from any endpoint."""

from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from routiq.api.errors import ValidationFailed
from routiq.api.pagination import MAX_OFFSET, PageRequest, query_datetime, query_text


def request(**params):
    return Request(APIRequestFactory().get("/", params))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, (25, 0)),
        ({"limit": "1", "offset": "0"}, (1, 0)),
        ({"limit": "200", "offset": str(MAX_OFFSET)}, (200, MAX_OFFSET)),
    ],
)
def test_page_request_bounds(params, expected):
    window = PageRequest.from_request(request(**params), default_limit=25)
    assert (window.limit, window.offset) == expected


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": " 5"},
        {"limit": "+5"},
        {"limit": "５"},
        {"offset": str(MAX_OFFSET + 1)},
    ],
)
def test_page_request_refuses(params):
    with pytest.raises(ValidationFailed) as raised:
        PageRequest.from_request(request(**params))
    assert list(raised.value.details) == list(params)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-03-01T09:00:00Z", datetime(2026, 3, 1, 9, tzinfo=UTC)),
        ("2026-03-01t19:00:00.123456789+10:00", datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)),
        # RFC 3339 allows offsets PostgreSQL does not: the value is sent in UTC.
        ("2026-03-01T21:43:00+21:43", datetime(2026, 3, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00+01:00", datetime.min.replace(tzinfo=UTC)),
        ("9999-12-31T23:59:59-01:00", datetime.max.replace(tzinfo=UTC)),
    ],
)
def test_query_datetime_reads_rfc3339_into_utc(raw, expected):
    moment = query_datetime(request(since=raw), "since")
    assert moment == expected and moment.utcoffset() == timedelta(0)


def test_query_text_trims_and_treats_blank_as_absent():
    assert query_text(request(q="  a%_b "), "q") == "a%_b"
    assert query_text(request(q="   "), "q") is None
    assert query_text(request(), "q") is None
