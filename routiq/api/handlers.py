"""Django-level 404/500 for /api/ paths, in the same envelope as DRF's errors."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from routiq.api.envelope import error_body
from routiq.api.errors import ApiError, NotFound


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


# Exempt: it changes nothing, and a POST to an unknown API path should be told "no such
# endpoint" in the envelope, not get the CSRF middleware's HTML 403 page.
@csrf_exempt
def not_found(request: HttpRequest, exception: Any = None) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body(NotFound("No such endpoint.")), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body(ApiError()), status=500)
    return defaults.server_error(request)
