"""The audit log, read back: admins only, newest first, paged."""

from __future__ import annotations

from collections.abc import Iterable

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.api.base import OrganizationScopedView
from clinics.models import AuditEvent, Role
from clinics.selectors import audit_event_list
from routiq.api.pagination import (
    SEARCH_PARAMETER,
    datetime_parameter,
    page_parameters,
    paginate,
    query_datetime,
    query_text,
    text_parameter,
)
from routiq.api.schema import ORG_SCOPED_ERRORS, error_responses
from routiq.api.schema import envelope as envelope_schema

ACTOR_KINDS = ["user", "api_key", "system"]


class AuditEventItemSerializer(serializers.ModelSerializer):
    actor_kind = serializers.SerializerMethodField()
    details = serializers.DictField(read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "occurred_at",
            "actor_kind",
            "actor_label",
            "action",
            "object_type",
            "object_id",
            "request_id",
            "details",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=ACTOR_KINDS))
    def get_actor_kind(self, event: AuditEvent) -> str:
        # The ids only: following the foreign keys would cost a query per row.
        if event.actor_api_key_id is not None:
            return "api_key"
        if event.actor_user_id is not None:
            return "user"
        return "system"


def _items(events: Iterable[AuditEvent]) -> list[dict]:  # type: ignore[type-arg]
    return AuditEventItemSerializer(events, many=True).data


class AuditEventListView(OrganizationScopedView):
    read_role = Role.ADMIN

    @extend_schema(
        operation_id="audit_event_list",
        summary="Who did what, newest first (admins only)",
        parameters=[
            text_parameter("action", "Only this action, e.g. `patient.export`.", max_length=64),
            text_parameter(
                "object_type", "Only events on this kind of object, e.g. `patient`.", max_length=64
            ),
            text_parameter("object_id", "Only events on this object id.", max_length=64),
            datetime_parameter("since", "Only events at or after this moment (ISO 8601 with offset)."),
            datetime_parameter("until", "Only events before this moment (ISO 8601 with offset)."),
            SEARCH_PARAMETER,
            *page_parameters(),
        ],
        responses={
            200: envelope_schema("AuditEventList", "audit_events", AuditEventItemSerializer, many=True),
            **error_responses(400, *ORG_SCOPED_ERRORS),
        },
    )
    def get(self, request: Request, org_id: str) -> Response:
        events = audit_event_list(
            self.organization,
            action=query_text(request, "action", max_length=64),
            object_type=query_text(request, "object_type", max_length=64),
            object_id=query_text(request, "object_id", max_length=64),
            since=query_datetime(request, "since"),
            until=query_datetime(request, "until"),
            search=query_text(request, "search"),
        )
        return paginate(
            request,
            events,
            key="audit_events",
            ordering=("-occurred_at", "-pk"),
            serialize=_items,
            organization_id=self.organization.pk,
        )
