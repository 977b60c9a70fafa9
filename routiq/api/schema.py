"""OpenAPI pieces shared by every endpoint: the envelopes, documented once."""

from __future__ import annotations

from functools import cache
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from routiq.api.errors import ERROR_CODES


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=sorted(ERROR_CODES))
    message = serializers.CharField()
    timestamp = serializers.DateTimeField()
    request_id = serializers.CharField()
    details = serializers.JSONField(required=False)
    fallback_data = serializers.JSONField(required=False)


class ErrorEnvelopeSerializer(serializers.Serializer):
    success = serializers.BooleanField(help_text="Always false")
    organization_id = serializers.CharField(required=False)
    error = ErrorDetailSerializer()


@cache
def envelope(name: str, key: str, inner: Any, *, many: bool = False, org: bool = True) -> type:
    """A named success-envelope serializer wrapping `inner` under `key`."""
    fields: dict[str, Any] = {
        "success": serializers.BooleanField(help_text="Always true"),
        "timestamp": serializers.DateTimeField(),
        key: inner(many=many) if isinstance(inner, type) else inner,
    }
    if org:
        fields["organization_id"] = serializers.CharField()
    if many:
        fields.update(
            count=serializers.IntegerField(help_text="Items on this page"),
            total=serializers.IntegerField(help_text="Items matching, over all pages"),
            limit=serializers.IntegerField(),
            offset=serializers.IntegerField(),
        )
    return type(f"{name}Envelope", (serializers.Serializer,), fields)


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """Documented error bodies: the codes each status can carry."""
    result = {}
    for status in statuses:
        codes = sorted(code for code, (code_status, _) in ERROR_CODES.items() if code_status == status)
        result[status] = OpenApiResponse(
            ErrorEnvelopeSerializer, description="Error codes: " + ", ".join(codes)
        )
    return result


AUTHENTICATED_ERRORS = (401, 429, 500)
ORG_SCOPED_ERRORS = (401, 403, 404, 429, 500)


class RoutiqAutoSchema(AutoSchema):
    """Adds the X-Organization-ID header the frontend sends to every organization-scoped call."""

    def get_override_parameters(self) -> list[Any]:
        from clinics.api.base import ORG_HEADER, OrganizationScopedView

        parameters = list(super().get_override_parameters())
        if isinstance(self.view, OrganizationScopedView):
            parameters.append(
                OpenApiParameter(
                    ORG_HEADER,
                    str,
                    OpenApiParameter.HEADER,
                    required=False,
                    description="Optional; when sent it must equal the organization in the path (else 403).",
                )
            )
        return parameters
