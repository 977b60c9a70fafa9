"""What the lower layers announce, published as events (connected in `RealtimeConfig.ready`).

- `sync.signals.sync_run_changed`: sync_started, sync_progress (after each committed page),
  sync_completed (completed or partial) and sync_failed, each carrying the run's summary.
- `patients.changes.records_changed`: appointments_changed for each committed page that changed
  appointments; when the run ends (its profiles refreshed by the receivers connected before
  this one), profiles_changed with the patients the run touched, then metrics_updated with the
  summaries as they now are.

Both signals are sent after the announcing transaction committed, so `publish` opens its own.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from clinics.models import Organization
from patients.changes import RecordsChanged
from realtime.events import EventType, publish
from realtime.snapshot import metrics_payload
from sync.models import SyncStatus
from sync.pms.base import APPOINTMENT

logger = logging.getLogger(__name__)

# Ids listed in one event at most; the count says how many there were.
ID_CAP = 100

_RUN_EVENTS = {"started": EventType.SYNC_STARTED, "progress": EventType.SYNC_PROGRESS}


def on_sync_run_changed(sender: Any, event: str, run: dict[str, Any], **kwargs: Any) -> None:
    if event == "finished":
        event_type = (
            EventType.SYNC_FAILED if run.get("status") == SyncStatus.FAILED else EventType.SYNC_COMPLETED
        )
    elif event in _RUN_EVENTS:
        event_type = _RUN_EVENTS[event]
    else:
        return  # "queued": the snapshot shows it; nothing has happened yet
    publish(run["organization_id"], event_type, {"run": run})


def _capped(ids: Any) -> dict[str, Any]:
    ordered = sorted(set(ids))
    return {"count": len(ordered), "ids": ordered[:ID_CAP], "truncated": len(ordered) > ID_CAP}


# Patients touched per (organization, run), until the run's final announcement.
_touched: dict[tuple[str, int | None], set[int]] = {}
_touched_lock = threading.Lock()


def on_records_changed(sender: Any, change: RecordsChanged, **kwargs: Any) -> None:
    key = (change.organization_id, change.run_id)
    if not change.final:
        with _touched_lock:
            _touched.setdefault(key, set()).update(change.patient_ids)
        if change.resource == APPOINTMENT:
            changed = {
                "run_id": change.run_id,
                "created": len(change.created),
                "updated": len(change.updated),
                "removed": len(change.removed),
                "appointments": _capped((*change.created, *change.updated, *change.removed)),
                "patients": _capped(change.patient_ids),
            }
            publish(change.organization_id, EventType.APPOINTMENTS_CHANGED, changed)
        return
    with _touched_lock:
        patients = _touched.pop(key, set())
    organization = Organization.objects.filter(pk=change.organization_id).first()
    if organization is None:
        return
    if patients:
        publish(
            organization, EventType.PROFILES_CHANGED, {"run_id": change.run_id, "patients": _capped(patients)}
        )
    publish(
        organization, EventType.METRICS_UPDATED, {"run_id": change.run_id, **metrics_payload(organization)}
    )
