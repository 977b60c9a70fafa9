"""The response envelope the frontend contract names: success bodies and error bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rest_framework.response import Response

from routiq.api.request_id import current_request_id

if TYPE_CHECKING:
    from routiq.api.errors import ApiError


def utc_timestamp(moment: datetime | None = None) -> str:
    moment = (moment or datetime.now(tz=UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ok(
    key: str,
    data: Any,
    *,
    organization_id: str | None = None,
    status: int = 200,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {"success": True, "timestamp": utc_timestamp()}
    if organization_id is not None:
        body["organization_id"] = organization_id
    body[key] = data
    body.update(extra)
    return Response(body, status=status)


def page(
    key: str, items: list[Any], *, total: int, limit: int, offset: int, organization_id: str | None
) -> Response:
    return ok(
        key, items, organization_id=organization_id, count=len(items), total=total, limit=limit, offset=offset
    )


def error_body(error: ApiError, *, organization_id: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "code": error.code,
        "message": error.message,
        "timestamp": utc_timestamp(),
        "request_id": current_request_id(),
    }
    if error.details is not None:
        payload["details"] = error.details
    if error.fallback_data is not None:
        payload["fallback_data"] = error.fallback_data
    body: dict[str, Any] = {"success": False, "error": payload}
    if organization_id:
        body["organization_id"] = organization_id
    return body
