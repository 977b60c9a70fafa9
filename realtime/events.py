"""The one publisher of live updates, and the reads of the event log it writes.

`publish(org, type, payload)` numbers the event, writes it to the organization's log in the
current transaction (its own when there is none) and, once that transaction commits, sends a
copy to the organization's channel group (`org.<id>.metrics`). A rolled-back transaction
publishes nothing and gives its number back, so an organization's sequence numbers run 1, 2,
3... without gaps or duplicates, and every number below a committed one is committed too.

The log, not the channel layer, is the truth: the layer delivers at most once and drops
messages when a channel is full. Consumers and the fallbacks (polling, Server-Sent Events)
fill any gap from `event_window()`, and ask for a snapshot when the gap is older than the log
keeps (`events_prune()`: REALTIME_EVENT_RETENTION_HOURS, at most
REALTIME_EVENT_KEEP_PER_ORGANIZATION events per organization).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from clinics.models import Organization
from clinics.rls import tenant_scope
from realtime.models import Event, EventCounter

logger = logging.getLogger(__name__)


class EventType(StrEnum):
    SYNC_STARTED = "sync_started"
    SYNC_PROGRESS = "sync_progress"
    SYNC_COMPLETED = "sync_completed"
    SYNC_FAILED = "sync_failed"
    APPOINTMENTS_CHANGED = "appointments_changed"
    PROFILES_CHANGED = "profiles_changed"
    METRICS_UPDATED = "metrics_updated"


# The channel-layer message type carrying one event (consumers' `realtime_event` handler).
GROUP_MESSAGE = "realtime.event"

# The counter row stays locked until the publishing transaction ends: publishers of one
# organization take their numbers one after another, in commit order.
_NEXT_SEQ = f"""
INSERT INTO {EventCounter._meta.db_table} AS counter (organization_id, last_seq) VALUES (%s, 1)
ON CONFLICT (organization_id) DO UPDATE SET last_seq = counter.last_seq + 1
RETURNING last_seq
"""


def group_name(organization_id: str) -> str:
    return f"org.{organization_id}.metrics"


def _org_id(organization: Organization | str) -> str:
    org_id = organization if isinstance(organization, str) else organization.pk
    if not org_id:
        raise ValueError("an event needs an organization")
    return str(org_id)


@dataclass(frozen=True)
class LoggedEvent:
    seq: int
    type: str
    at: datetime
    data: dict[str, Any]

    @classmethod
    def from_row(cls, row: Event) -> LoggedEvent:
        return cls(seq=row.seq, type=row.type, at=row.created_at, data=row.payload)

    def message(self) -> dict[str, Any]:
        """The event as clients receive it (WebSocket message, SSE data, polling item)."""
        return {"type": self.type, "seq": self.seq, "at": _iso(self.at), "data": self.data}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def publish(organization: Organization | str, event_type: EventType | str, payload: Mapping[str, Any]) -> int:
    """Log an event of the organization and send it to its group after commit; its number."""
    org_id = _org_id(organization)
    event_type = EventType(event_type)  # a ValueError for a type nobody documented
    # Through JSON once, so the log and the channel layer carry exactly the same plain data.
    data = json.loads(json.dumps(dict(payload), cls=DjangoJSONEncoder))
    with tenant_scope(org_id):
        with connection.cursor() as cursor:
            cursor.execute(_NEXT_SEQ, [org_id])
            seq = cursor.fetchone()[0]
        row = Event.objects.create(organization_id=org_id, seq=seq, type=event_type.value, payload=data)
        message = LoggedEvent.from_row(row).message()
        # Registered inside the scope: if only this savepoint rolls back, so does the send.
        transaction.on_commit(lambda: _group_send(org_id, message), robust=True)
    return seq


def _group_send(org_id: str, message: dict[str, Any]) -> None:
    """Best effort: a copy lost here is found in the log by the next event, heartbeat or poll."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group_name(org_id), {"type": GROUP_MESSAGE, "event": message})
    except Exception as exc:
        logger.warning("event %s of %s not sent to its group: %s", message["seq"], org_id, type(exc).__name__)


# --- reads ---------------------------------------------------------------------------------------
def _latest_seq(org_id: str) -> int:
    found = EventCounter.objects.for_org(org_id).values_list("last_seq", flat=True).first()
    return found or 0


def event_latest_seq(organization: Organization | str) -> int:
    """The number of the organization's newest committed event (0: none yet)."""
    org_id = _org_id(organization)
    with tenant_scope(org_id):
        return _latest_seq(org_id)


@dataclass(frozen=True)
class EventWindow:
    """What a client that has seen everything through `since` is missing."""

    since: int
    events: list[LoggedEvent]
    latest_seq: int
    has_more: bool  # more than `limit` events are missing: ask again from the last one
    snapshot_required: bool  # the missing events are no longer all in the log (or `since` is unknown)


def event_window(organization: Organization | str, *, since: int | None, limit: int) -> EventWindow:
    """The events after `since` (at most `limit`, oldest first). `since` None means "from now"."""
    org_id = _org_id(organization)
    with tenant_scope(org_id):
        if since is None:
            latest = _latest_seq(org_id)
            return EventWindow(
                since=latest, events=[], latest_seq=latest, has_more=False, snapshot_required=False
            )
        rows = list(Event.objects.for_org(org_id).filter(seq__gt=since).order_by("seq")[: limit + 1])
        # Read after the events, so it is at least the newest of them.
        latest = _latest_seq(org_id)
    events = [LoggedEvent.from_row(row) for row in rows[:limit]]
    # The first missing event must be there: if it was pruned (even while we read), the
    # client's state is older than the log can bring up to date. A `since` beyond the newest
    # number is a client from another database (a restore): it needs a snapshot too.
    gone = since < latest and (not events or events[0].seq != since + 1)
    if gone or since > latest:
        return EventWindow(since=since, events=[], latest_seq=latest, has_more=False, snapshot_required=True)
    return EventWindow(
        since=since, events=events, latest_seq=latest, has_more=len(rows) > limit, snapshot_required=False
    )


# --- retention -----------------------------------------------------------------------------------
def events_prune(*, now: datetime | None = None) -> int:
    """Delete events older than the retention, or beyond the newest N of their organization;
    how many were deleted. Each organization in its own tenant transaction."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.REALTIME_EVENT_RETENTION_HOURS)
    keep = settings.REALTIME_EVENT_KEEP_PER_ORGANIZATION
    deleted = 0
    for org_id in Organization.objects.order_by("pk").values_list("pk", flat=True):
        with tenant_scope(org_id):
            latest = _latest_seq(org_id)
            if not latest:
                continue
            count, _ = (
                Event.objects.for_org(org_id)
                .filter(Q(created_at__lt=cutoff) | Q(seq__lte=latest - keep))
                .delete()
            )
            deleted += count
    return deleted
