"""What a client is sent first, and what `metrics_updated` carries: the organization's state.

The dashboard and profile summaries are the API's own cached answers (JSON bytes under the
organization's data version, `patients.api.answers`), spliced into the message as they are.
"""

from __future__ import annotations

import json
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


def _dumps(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, separators=(",", ":"))


def snapshot_build(organization_id: str) -> tuple[int, str]:
    """(seq, the snapshot message as JSON text), for an organization that exists.

    The number is read first, in the same transaction: everything published after it is
    delivered as a delta, and whatever the summaries already include is harmless to hear of
    again."""
    with tenant_scope(organization_id):
        seq = event_latest_seq(organization_id)
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
    return seq, f'{_dumps(head)[:-1]},"dashboard":{dashboard},"profiles":{profiles}}}'


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
