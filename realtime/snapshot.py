"""What a client is sent first, and what `metrics_updated` carries: the organization's state.

The dashboard and profile summaries are the API's own cached answers (JSON bytes under the
organization's data version, `patients.api.answers`), spliced into the message as they are.

A process builds an organization's snapshot once per sequence number and moment: when many
clients connect together (a server restart reconnects them all) they share it for
SNAPSHOT_REUSE_SECONDS, unless an event is published meanwhile.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from clinics.models import Organization
from clinics.rls import tenant_scope
from patients.api.answers import profile_summary
from patients.selectors import organization_data_as_of
from realtime.events import event_latest_seq
from routiq.api.envelope import utc_timestamp
from sync import selectors as sync_selectors
from sync.engine.runner import run_summary


def _dashboard_summary(organization: Organization) -> bytes:
    from patients.api.reengagement import dashboard_summary_answer

    return dashboard_summary_answer(organization)


def sync_status(organization: Organization) -> list[dict[str, Any]]:
    """Each PMS connection: its state, the run going on (if any) and the last one."""
    from clinics.models import PmsConnection

    status = []
    for connection in PmsConnection.objects.for_org(organization).order_by("kind"):
        runs = sync_selectors.sync_run_list(organization, connection=connection)
        active = sync_selectors.sync_run_active(organization, connection)
        last = runs.first()
        status.append(
            {
                "pms": connection.kind,
                "connection_status": connection.status,
                "last_successful_sync_at": connection.last_successful_sync_at,
                "data_age_minutes": sync_selectors.data_age_minutes(connection),
                "active_run": run_summary(active) if active else None,
                "last_run": run_summary(last) if last else None,
            }
        )
    return status


SNAPSHOT_REUSE_SECONDS = 2.0
# organization id -> (seq, monotonic time built, the message)
_RECENT: dict[str, tuple[int, float, str]] = {}
_RECENT_LOCK = threading.Lock()


def snapshots_forget() -> None:
    with _RECENT_LOCK:
        _RECENT.clear()


def _dumps(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":"))


def snapshot_build(organization_id: str) -> tuple[int, str]:
    """(seq, the snapshot message as JSON text), for an organization that exists.

    The number is read first, in the same transaction: everything published after it is
    delivered as a delta, and whatever the summaries already include is harmless to hear of
    again."""
    with tenant_scope(organization_id):
        seq = event_latest_seq(organization_id)
        now = time.monotonic()
        with _RECENT_LOCK:
            recent = _RECENT.get(organization_id)
        if recent is not None and recent[0] == seq and now - recent[1] < SNAPSHOT_REUSE_SECONDS:
            return seq, recent[2]
        organization = Organization.objects.get(pk=organization_id)
        head = {
            "type": "snapshot",
            "seq": seq,
            "organization_id": organization_id,
            "at": utc_timestamp(),
            "data_as_of": organization_data_as_of(organization),
            "sync": sync_status(organization),
        }
        dashboard = _dashboard_summary(organization).decode()
        profiles = profile_summary(organization).decode()
    # The cached answers are objects ({"summary": ..., "data_as_of": ...}): spliced, not re-encoded.
    text = f'{_dumps(head)[:-1]},"dashboard":{dashboard},"profiles":{profiles}}}'
    with _RECENT_LOCK:
        _RECENT[organization_id] = (seq, now, text)
    return seq, text


def metrics_payload(organization: Organization) -> dict[str, Any]:
    """What `metrics_updated` carries: the summaries a dashboard shows, as of now."""
    with tenant_scope(organization):
        dashboard = json.loads(_dashboard_summary(organization))
        profiles = json.loads(profile_summary(organization))
        data_as_of = organization_data_as_of(organization)
    return {
        "data_as_of": data_as_of,
        "dashboard": dashboard.get("summary"),
        "profiles": profiles.get("summary"),
    }
