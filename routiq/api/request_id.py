"""Request ids: one per request, echoed in `X-Request-ID`, carried by every log line."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_current: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def current_request_id() -> str:
    return _current.get()


def _incoming_or_new(request: HttpRequest) -> str:
    # A proxy's id is kept so one request can be followed across systems; anything odd is
    # replaced rather than logged verbatim.
    incoming = request.headers.get(HEADER, "")
    return incoming if _ACCEPTABLE.match(incoming) else uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = _incoming_or_new(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        # Not reset afterwards: Django's own request log line is written after the
        # middleware returns, and should carry the id too. Each request sets its own.
        _current.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True
