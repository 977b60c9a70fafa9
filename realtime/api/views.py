"""The fallbacks on the event log: polling (`GET /api/v1/events/{org}?since=`) and Server-Sent
Events (`GET /api/v1/events/{org}/stream`). Same authentication, membership and rate limits as
every organization-scoped endpoint; the stream is described in realtime/PROTOCOL.md (OpenAPI
has no words for an event stream, so it is left out of the schema).
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import HttpResponseBase, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.api.base import OrganizationScopedView
from realtime.events import EventType, event_window
from realtime.stream import event_stream, sync_stream
from routiq.api import envelope
from routiq.api.pagination import integer_parameter, invalid, query_integer
from routiq.api.schema import ORG_SCOPED_ERRORS, error_responses

MAX_SEQ = 2**63 - 1
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
LAST_EVENT_ID = "Last-Event-ID"


class RealtimeEventSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=[kind.value for kind in EventType])
    seq = serializers.IntegerField(min_value=1, help_text="Increases by one per organization")
    at = serializers.DateTimeField()
    data = serializers.JSONField(help_text="Per type: see realtime/PROTOCOL.md")


class RealtimeEventsEnvelopeSerializer(serializers.Serializer):
    success = serializers.BooleanField(help_text="Always true")
    timestamp = serializers.DateTimeField()
    organization_id = serializers.CharField()
    events = RealtimeEventSerializer(many=True)
    count = serializers.IntegerField(help_text="Events in this answer")
    since = serializers.IntegerField(help_text="The sequence number asked from (the latest when not given)")
    latest_seq = serializers.IntegerField(help_text="The organization's newest event")
    has_more = serializers.BooleanField(help_text="More events follow: ask again from the last one")
    snapshot_required = serializers.BooleanField(
        help_text="`since` is older than the log keeps (or unknown): reload, then poll from latest_seq"
    )


def _since(request: Request) -> int | None:
    since = query_integer(request, "since", default=-1, least=0, most=MAX_SEQ)
    return None if since < 0 else since


class EventListView(OrganizationScopedView):
    @extend_schema(
        operation_id="realtime_events",
        summary="The organization's live events after a sequence number (the polling fallback)",
        parameters=[
            OpenApiParameter(
                "since",
                {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                description="The last sequence number the client has; omitted: only latest_seq is answered.",
            ),
            integer_parameter("limit", "Events at most.", default=DEFAULT_LIMIT, least=1, most=MAX_LIMIT),
        ],
        responses={200: RealtimeEventsEnvelopeSerializer, **error_responses(400, *ORG_SCOPED_ERRORS)},
    )
    def get(self, request: Request, org_id: str) -> Response:
        since = _since(request)
        limit = query_integer(request, "limit", default=DEFAULT_LIMIT, least=1, most=MAX_LIMIT)
        window = event_window(self.organization, since=since, limit=limit)
        return envelope.ok(
            "events",
            [event.message() for event in window.events],
            organization_id=self.organization.pk,
            count=len(window.events),
            since=window.since,
            latest_seq=window.latest_seq,
            has_more=window.has_more,
            snapshot_required=window.snapshot_required,
        )


class EventStreamView(OrganizationScopedView):
    @extend_schema(exclude=True)
    def get(self, request: Request, org_id: str) -> StreamingHttpResponse:
        since = self._resume_from(request)
        if isinstance(request._request, ASGIRequest):
            principal = request.auth
            claims = getattr(principal, "claims", None)
            content: Any = event_stream(
                self.organization.pk, since=since, expires_at=claims.expires_at if claims else None
            )
        else:
            content = sync_stream(self.organization.pk, since=since)
        response = StreamingHttpResponse(content, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return response

    @staticmethod
    def _resume_from(request: Request) -> int | None:
        """`Last-Event-ID` (sent by EventSource when it reconnects), else `since`."""
        header = request.headers.get(LAST_EVENT_ID)
        if header is None:
            return _since(request)
        if not header.isascii() or not header.isdigit() or len(header) > 19 or int(header) > MAX_SEQ:
            raise invalid(LAST_EVENT_ID, "Must be a sequence number this stream sent.")
        return int(header)

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:  # noqa: FBT001, FBT002
        # EventSource asks for text/event-stream only; refusals are still the JSON envelope.
        return JSONRenderer(), JSONRenderer.media_type

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = super().dispatch(request, *args, **kwargs)
        if response.streaming and isinstance(request, ASGIRequest) and not connection.in_atomic_block:
            # Authentication used a pooled connection; the stream must not keep it while it
            # waits (its own reads borrow one briefly).
            connection.close()
        return response
