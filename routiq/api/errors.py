"""One error shape for the whole API, from one exception handler.

Services raise `ApiError` subclasses (or Django/DRF exceptions); nothing builds an error
response by hand. Every code is listed in `ERROR_CODES`, which the README's table mirrors.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response

from routiq.api.envelope import error_body

logger = logging.getLogger(__name__)

# code -> (HTTP status, meaning). The stable contract: codes never change meaning.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "VALIDATION_ERROR": (400, "A parameter or body field is missing or invalid; `details` says which."),
    "AUTHENTICATION_REQUIRED": (401, "No credentials were sent."),
    "TOKEN_EXPIRED": (401, "The session token has expired; refresh it and retry."),
    "TOKEN_INVALID": (401, "The token or API key is malformed, forged, revoked or not for this service."),
    "ORG_ACCESS_DENIED": (403, "The organization in the path is not the caller's active organization."),
    "PERMISSION_DENIED": (403, "The caller's role does not allow this action."),
    "NOT_FOUND": (404, "No such resource in this organization (also for other tenants' resources)."),
    "METHOD_NOT_ALLOWED": (405, "The endpoint does not accept this HTTP method."),
    "NOT_ACCEPTABLE": (406, "The requested response format is not available."),
    "CONFLICT": (409, "The request conflicts with the current state (e.g. a sync already running)."),
    "UNSUPPORTED_MEDIA_TYPE": (415, "The request body's content type is not accepted."),
    "RATE_LIMITED": (429, "Too many requests; retry after `Retry-After` seconds."),
    "INTERNAL_ERROR": (500, "An unexpected error; the request id identifies it in the logs."),
    "PMS_UNAVAILABLE": (
        503,
        "The practice-management system cannot be reached now; `fallback_data` says how old the data is.",
    ),
    "PMS_AUTH_FAILED": (
        503,
        "The practice-management system refused the stored credentials; an admin must update them.",
    ),
    "SERVICE_UNAVAILABLE": (503, "A dependency of Routiq is down; retry later."),
}


class ApiError(Exception):
    code = "INTERNAL_ERROR"
    default_message = "An unexpected error occurred."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        fallback_data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.fallback_data = fallback_data
        self.headers = headers or {}
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return ERROR_CODES[self.code][0]


def _error(code_name: str, message: str) -> type[ApiError]:
    return type(
        code_name.title().replace("_", ""), (ApiError,), {"code": code_name, "default_message": message}
    )


ValidationFailed = _error("VALIDATION_ERROR", "The request is invalid.")
AuthenticationRequired = _error("AUTHENTICATION_REQUIRED", "Authentication credentials were not provided.")
TokenExpired = _error("TOKEN_EXPIRED", "The token has expired.")
TokenInvalid = _error("TOKEN_INVALID", "The token is invalid.")
OrgAccessDenied = _error("ORG_ACCESS_DENIED", "You do not have access to this organization.")
PermissionDeniedError = _error("PERMISSION_DENIED", "Your role does not allow this action.")
NotFound = _error("NOT_FOUND", "Not found.")
Conflict = _error("CONFLICT", "The request conflicts with the current state.")
RateLimited = _error("RATE_LIMITED", "Too many requests.")
PmsUnavailable = _error("PMS_UNAVAILABLE", "The practice-management system is unavailable.")
PmsAuthFailed = _error("PMS_AUTH_FAILED", "The practice-management system refused the credentials.")


def _from_drf(exc: drf.APIException) -> ApiError:
    if isinstance(exc, drf.ValidationError):
        return ValidationFailed(details=exc.detail)
    if isinstance(exc, drf.NotAuthenticated):
        return AuthenticationRequired()
    if isinstance(exc, drf.AuthenticationFailed):
        return TokenInvalid(str(exc.detail))
    if isinstance(exc, drf.PermissionDenied):
        return PermissionDeniedError()
    if isinstance(exc, drf.NotFound):
        return NotFound()
    if isinstance(exc, drf.Throttled):
        wait = int(exc.wait or 1)
        return RateLimited(
            f"Too many requests; retry in {wait} s.",
            details={"retry_after": wait},
            headers={"Retry-After": str(wait)},
        )
    simple = {
        drf.MethodNotAllowed: "METHOD_NOT_ALLOWED",
        drf.NotAcceptable: "NOT_ACCEPTABLE",
        drf.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
        drf.ParseError: "VALIDATION_ERROR",
    }
    for kind, code in simple.items():
        if isinstance(exc, kind):
            return _error(code, str(exc.detail))()
    return ApiError()


def to_api_error(exc: Exception) -> ApiError | None:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Http404):
        return NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return PermissionDeniedError()
    if isinstance(exc, DjangoValidationError):
        details = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return ValidationFailed(details=details)
    if isinstance(exc, drf.APIException):
        return _from_drf(exc)
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every error, expected or not, in the one envelope."""
    error = to_api_error(exc)
    if error is None:
        # Logged with its traceback under the request id; the client sees only the id.
        logger.exception("unhandled error in %s", type(context.get("view")).__name__)
        error = ApiError()
    request = context.get("request")
    organization_id = getattr(request, "organization_id", None) if request is not None else None
    response = Response(error_body(error, organization_id=organization_id), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="routiq"'
    return response
