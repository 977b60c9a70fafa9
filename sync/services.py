"""Writes of the sync: asking for a run, carrying one out, and the per-connection schedule.

Views, admin actions, the `sync` command and django-q2 tasks are thin wrappers around these.
The PMS is the source of truth and is only ever read: nothing here writes to it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from clinics.models import ConnectionStatus, Organization, PmsConnection
from clinics.rls import cross_tenant_scope, tenant_scope
from sync.engine.runner import RunLost, SyncEngine, SyncOptions, run_summary, worker_label
from sync.models import ACTIVE_STATUSES, SyncCursor, SyncMode, SyncRun, SyncStatus, SyncTrigger
from sync.pms import base
from sync.pms.errors import PmsError
from sync.signals import sync_run_announce

logger = logging.getLogger(__name__)

SCHEDULE_PREFIX = "sync:connection:"
TASK = "sync.tasks.sync_run_task"


# Pacing stays this far under a connection's own limit (195 of Cliniko's 200).
PACING_SHARE = 0.975


def pacing_rate(connection: PmsConnection) -> float | None:
    """Requests a minute to pace this connection at (None: the client's own default)."""
    if connection.rate_limit_per_minute:
        return connection.rate_limit_per_minute * PACING_SHARE
    return {"cliniko": settings.CLINIKO_RATE_PER_MINUTE}.get(connection.kind)


def client_options(connection: PmsConnection) -> dict[str, Any]:
    """What every PMS client built for a sync is given, from settings and the connection."""
    return {
        "rate_per_minute": pacing_rate(connection),
        "max_attempts": settings.SYNC_MAX_ATTEMPTS,
        "backoff_base": settings.SYNC_BACKOFF_BASE,
        "backoff_cap": settings.SYNC_BACKOFF_CAP,
        "connect_timeout": settings.SYNC_CONNECT_TIMEOUT,
        "read_timeout": settings.SYNC_READ_TIMEOUT,
        "failure_threshold": settings.SYNC_BREAKER_THRESHOLD,
        "reset_timeout": settings.SYNC_BREAKER_RESET_SECONDS,
    }


def _stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.SYNC_STALE_SECONDS)


def sync_run_is_stale(run: SyncRun) -> bool:
    """Running, but its worker has not stamped a heartbeat for SYNC_STALE_SECONDS; or queued
    for SYNC_QUEUED_STALE_SECONDS with no worker taking it (its task was lost)."""
    if run.status == SyncStatus.QUEUED:
        return run.created_at < timezone.now() - timedelta(seconds=settings.SYNC_QUEUED_STALE_SECONDS)
    beat = run.heartbeat_at or run.started_at
    return run.status == SyncStatus.RUNNING and (beat is None or beat < _stale_before())


def sync_run_request(
    organization: Organization,
    *,
    connection: PmsConnection,
    mode: str = SyncMode.INCREMENTAL,
    trigger: str = SyncTrigger.API,
    requested_by: str = "",
    resources: list[str] | None = None,
) -> tuple[SyncRun, bool]:
    """Queue a run of `connection`, or hand back the one already queued or running
    (`created` False). A running run whose worker died is closed as failed and replaced;
    the new one resumes from the cursors the dead one committed."""
    if mode not in SyncMode.values:
        raise ValueError(f"mode must be one of {', '.join(SyncMode.values)}")
    unknown = set(resources or ()) - set(base.RESOURCES)
    if unknown:
        raise ValueError(f"unknown resources: {', '.join(sorted(unknown))}")
    with tenant_scope(organization):
        active = _active_run(organization, connection)
        if active is not None:
            if not sync_run_is_stale(active):
                return active, False
            _close_lost(active)
        try:
            with transaction.atomic():
                run = SyncRun.objects.create(
                    organization=organization,
                    connection=connection,
                    pms=connection.kind,
                    mode=mode,
                    trigger=trigger,
                    requested_by=requested_by[:150],
                    resources=list(resources or []),
                )
        except IntegrityError:
            # Another trigger queued one between our look and our insert: theirs is the run.
            winner = _active_run(organization, connection)
            if winner is None:
                raise
            return winner, False
        sync_run_announce("queued", run_summary(run))
    return run, True


def _active_run(organization: Organization, connection: PmsConnection) -> SyncRun | None:
    return (
        SyncRun.objects.for_org(organization)
        .filter(connection=connection, status__in=ACTIVE_STATUSES)
        .select_for_update()
        .first()
    )


def _close_lost(run: SyncRun) -> None:
    queued = run.status == SyncStatus.QUEUED
    logger.warning(
        "sync run %s (%s) lost its worker (%s); closing it", run.pk, run.status, run.worker or "none"
    )
    SyncRun.objects.for_org(run.organization_id).filter(pk=run.pk).update(
        status=SyncStatus.FAILED,
        finished_at=timezone.now(),
        error_code="QUEUE_LOST" if queued else "WORKER_LOST",
        error_message=(
            "No worker took this sync from the queue; a new run replaces it."
            if queued
            else "The worker running this sync stopped; a new run resumes where it left off."
        ),
    )


def sync_run_enqueue(run: SyncRun) -> None:
    """Hand the run to the job queue once the transaction that created it commits."""
    from django_q.tasks import async_task

    run_id, org_id = run.pk, run.organization_id
    transaction.on_commit(lambda: async_task(TASK, run_id, org_id, task_name=f"sync-run-{run_id}"))


def sync_run_execute(
    run_id: int,
    organization_id: str,
    *,
    options: SyncOptions | None = None,
    adapter_options: dict[str, Any] | None = None,
    clock: Callable[[], datetime] = timezone.now,
    progress: Callable[[SyncRun], None] | None = None,
) -> SyncRun | None:
    """Claim a queued run (or one whose worker died) and carry it out. None when it is not
    there to claim: finished already, or another worker has it (retries are harmless)."""
    with tenant_scope(organization_id):
        now = timezone.now()
        claimable = Q(status=SyncStatus.QUEUED) | Q(
            status=SyncStatus.RUNNING, heartbeat_at__lt=_stale_before()
        )
        claim = uuid.uuid4().hex
        claimed = (
            SyncRun.objects.for_org(organization_id)
            .filter(claimable, pk=run_id)
            .update(
                status=SyncStatus.RUNNING,
                started_at=Coalesce("started_at", now),
                heartbeat_at=now,
                worker=worker_label(),
                claim=claim,
            )
        )
        if not claimed:
            return None
        run = (
            SyncRun.objects.for_org(organization_id)
            .select_related("connection", "connection__organization")
            .get(pk=run_id)
        )
        sync_run_announce("started", run_summary(run))
    connection = run.connection
    counter = base.EventCounter()
    try:
        adapter = base.adapter_for(
            connection, on_event=counter, **{**client_options(connection), **(adapter_options or {})}
        )
    except (PmsError, base.UnknownPmsKind, ValueError) as exc:
        return _fail(run, getattr(exc, "code", "PMS_UNAVAILABLE"), str(exc))
    engine = SyncEngine(
        run,
        organization=connection.organization,
        connection=connection,
        adapter=adapter,
        counter=counter,
        options=options or SyncOptions.from_settings(),
        clock=clock,
        progress=progress,
    )
    try:
        return engine.execute()
    except RunLost:
        logger.warning("sync run %s was taken over by another worker; this one stops", run_id)
        return None
    except DatabaseError as exc:
        # The first line only: PostgreSQL's DETAIL and CONTEXT may quote a row (personal data).
        first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
        logger.error("sync run %s failed on the database: %s: %s", run_id, type(exc).__name__, first_line)
        return _fail(run, "INTERNAL_ERROR", "The sync failed on the database; see the worker's log.")
    except Exception:
        logger.exception("sync run %s failed unexpectedly", run_id)
        return _fail(run, "INTERNAL_ERROR", "The sync failed unexpectedly; see the worker's log.")
    finally:
        adapter.close()


def _fail(run: SyncRun, code: str, message: str) -> SyncRun | None:
    """Close a run this worker claimed as failed (None if it is no longer this worker's)."""
    with tenant_scope(run.organization_id):
        run.status, run.finished_at = SyncStatus.FAILED, timezone.now()
        run.error_code, run.error_message = code[:40], message[:500]
        closed = (
            SyncRun.objects.for_org(run.organization_id)
            .filter(pk=run.pk, claim=run.claim, status=SyncStatus.RUNNING)
            .update(
                status=run.status,
                finished_at=run.finished_at,
                error_code=run.error_code,
                error_message=run.error_message,
            )
        )
        if not closed:
            return None
        sync_run_announce("finished", run_summary(run))
    return run


def sync_run_now(
    organization: Organization,
    *,
    connection: PmsConnection,
    mode: str = SyncMode.INCREMENTAL,
    trigger: str = SyncTrigger.COMMAND,
    requested_by: str = "",
    resources: list[str] | None = None,
    **execute_options: Any,
) -> tuple[SyncRun, bool]:
    """Request a run and carry it out in this process (the command's `--inline`, the
    scheduler's task). A run already active elsewhere is returned as it is."""
    run, created = sync_run_request(
        organization,
        connection=connection,
        mode=mode,
        trigger=trigger,
        requested_by=requested_by,
        resources=resources,
    )
    if not created:
        return run, False
    finished = sync_run_execute(run.pk, organization.pk, **execute_options)
    if finished is None:  # taken over by another worker meanwhile: its state, not ours
        with tenant_scope(organization):
            finished = SyncRun.objects.for_org(organization).get(pk=run.pk)
    return finished, True


# --- the schedule ---------------------------------------------------------------------------------
def full_sync_due(organization: Organization, connection: PmsConnection) -> bool:
    """Whether the oldest full pass of the connection's resources is older than
    SYNC_FULL_EVERY_HOURS (a connection never fully read is due)."""
    cursors = SyncCursor.objects.for_org(organization).filter(connection=connection)
    oldest = cursors.aggregate(oldest=Min("last_full_at"))["oldest"]
    if oldest is None or cursors.filter(last_full_at__isnull=True).exists():
        return True
    return oldest < timezone.now() - timedelta(hours=settings.SYNC_FULL_EVERY_HOURS)


def sync_scheduled_run(connection_id: int) -> SyncRun | None:
    """The schedule's task: sync one connection unless it is paused or already syncing."""
    with cross_tenant_scope("scheduler: the organization that owns a scheduled connection"):
        connection = PmsConnection.objects.select_related("organization").filter(pk=connection_id).first()
    if connection is None or connection.status != ConnectionStatus.ACTIVE:
        return None
    organization = connection.organization
    with tenant_scope(organization):
        mode = SyncMode.FULL if full_sync_due(organization, connection) else SyncMode.INCREMENTAL
    run, created = sync_run_now(
        organization, connection=connection, mode=mode, trigger=SyncTrigger.SCHEDULE, requested_by="schedule"
    )
    return run if created else None


def sync_schedule_ensure(connection: PmsConnection) -> Any:
    """Create, update or remove the connection's django-q2 schedule to match it (hourly by
    default; none when its interval is 0 or it is disabled). Catch-up stays off
    (Q_CLUSTER["catch_up"]): missed runs after downtime are not replayed."""
    from django_q.models import Schedule

    name = f"{SCHEDULE_PREFIX}{connection.pk}"
    if connection.sync_interval_minutes == 0 or connection.status == ConnectionStatus.DISABLED:
        Schedule.objects.filter(name=name).delete()
        return None
    schedule, _ = Schedule.objects.update_or_create(
        name=name,
        defaults={
            "func": "sync.tasks.sync_scheduled_task",
            "args": repr((connection.pk,)),
            "schedule_type": Schedule.MINUTES,
            "minutes": connection.sync_interval_minutes,
            "repeats": -1,
        },
    )
    return schedule


def sync_schedule_remove(connection_id: int) -> None:
    from django_q.models import Schedule

    Schedule.objects.filter(name=f"{SCHEDULE_PREFIX}{connection_id}").delete()
