"""Reads of the sync: runs, a connection's state, and how fresh the data held is."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from clinics.models import Organization, PmsConnection
from sync.models import ACTIVE_STATUSES, SyncRun
from sync.pms import base
from sync.pms.errors import PmsError
from sync.pms.pacing import BreakerStatus, CircuitState


def pms_connection_for(organization: Organization, *, kind: str | None = None) -> PmsConnection | None:
    """The organization's connection to `kind`, or its only connection when `kind` is None
    (None when it has none, or several and no kind was named)."""
    connections = PmsConnection.objects.for_org(organization).order_by("kind")
    if kind is not None:
        return connections.filter(kind=kind).first()
    found = list(connections[:2])
    return found[0] if len(found) == 1 else None


def sync_run_list(
    organization: Organization, *, connection: PmsConnection | None = None
) -> QuerySet[SyncRun]:
    runs = SyncRun.objects.for_org(organization)
    return runs.filter(connection=connection) if connection is not None else runs


def sync_run_get(organization: Organization, *, run_id: int) -> SyncRun:
    """One run of the organization (`SyncRun.DoesNotExist` for missing and foreign alike)."""
    if not 0 < run_id < 2**63:
        raise SyncRun.DoesNotExist  # beyond a bigint: no such row, and no database error
    return SyncRun.objects.for_org(organization).get(pk=run_id)


def sync_run_active(organization: Organization, connection: PmsConnection) -> SyncRun | None:
    return sync_run_list(organization, connection=connection).filter(status__in=ACTIVE_STATUSES).first()


def data_age_minutes(connection: PmsConnection, *, now: datetime | None = None) -> int | None:
    """Whole minutes since the last completed sync (None: never synced)."""
    if connection.last_successful_sync_at is None:
        return None
    seconds = ((now or timezone.now()) - connection.last_successful_sync_at).total_seconds()
    return max(0, math.floor(seconds / 60))


def fallback_data(connection: PmsConnection) -> dict[str, Any]:
    """What an error says about the data still being served while the PMS is out of reach."""
    last = connection.last_successful_sync_at
    return {
        "last_updated": last.isoformat() if last else None,
        "data_age_minutes": data_age_minutes(connection),
    }


def connection_circuit(connection: PmsConnection) -> BreakerStatus:
    """The connection's shared circuit breaker (no network call)."""
    adapter = base.adapter_for(connection)
    try:
        return adapter.circuit_status()
    finally:
        adapter.close()


@dataclass(frozen=True)
class HealthCheck:
    ok: bool
    latency_ms: int
    error_code: str | None = None
    error_message: str | None = None


def connection_health_check(connection: PmsConnection) -> HealthCheck:
    """One cheap read from the PMS with the stored credentials (a GET; nothing is written)."""
    started = time.monotonic()
    try:
        adapter = base.adapter_for(connection, max_attempts=1)
    except (PmsError, base.UnknownPmsKind) as exc:
        return HealthCheck(
            ok=False, latency_ms=0, error_code=getattr(exc, "code", "PMS_UNAVAILABLE"), error_message=str(exc)
        )
    try:
        adapter.check()
    except PmsError as exc:
        elapsed = round((time.monotonic() - started) * 1000)
        return HealthCheck(ok=False, latency_ms=elapsed, error_code=exc.code, error_message=exc.message)
    finally:
        adapter.close()
    return HealthCheck(ok=True, latency_ms=round((time.monotonic() - started) * 1000))


def circuit_is_open(status: BreakerStatus) -> bool:
    return status.state == CircuitState.OPEN
