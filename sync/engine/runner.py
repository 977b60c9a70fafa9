"""One sync run: every resource in dependency order, page by page, each page committed with
its cursor and the run's counts, so a crash re-reads at most one page.

Per resource, a listing is a window `(after, until)` of PMS `updated_at`:
- incremental: after the stored watermark (minus the adapter's lookback, for a PMS whose
  change filter is imprecise);
- full (asked for, or the first sync of that resource): from the beginning of time, noting
  every id listed so that the end of the pass can reconcile hard deletions;
- `until` is now minus the window margin (2 minutes). Records changing while the listing runs
  leave the window (the adapter sees it shrink) instead of shifting rows past a page boundary,
  and a record committed late, with an `updated_at` older than its commit, still lands after
  the watermark as long as its delay is within the margin (the reference's "safety margin").
The watermark only ever moves to the newest `updated_at` actually stored, never past `until`
(a future-dated record cannot freeze it) and never to our own clock (a PMS whose clock is
behind ours cannot make a change invisible).

A run is fenced by its claim: every write of its state checks the claim it was started with,
and a worker that lost its run (taken over after its heartbeat went stale) stops at its next
page, whose transaction rolls back.

Transient PMS failures that outlast the client's retries are retried per resource, resuming
from the last committed page; refused credentials stop the run and mark the connection as
needing attention; other failures fail that resource and the run goes on with the next.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, reset_queries
from django.utils import timezone

from clinics.models import ConnectionStatus, Organization, PmsConnection
from clinics.rls import tenant_scope
from patients.changes import RecordsChanged, records_changed_announce
from sync.engine import reconcile
from sync.engine.store import PageResult, PageWriter, refresh_statistics
from sync.models import SyncCursor, SyncMode, SyncRun, SyncStatus
from sync.pms import base
from sync.pms.errors import PmsAuthFailed, PmsCircuitOpen, PmsError
from sync.signals import sync_run_announce

logger = logging.getLogger(__name__)


class RunLost(Exception):
    """The run was taken over by another worker (this one was thought dead): stop, write nothing."""


COUNT_NAMES = ("fetched", "created", "updated", "unchanged", "archived", "deleted", "failed")
LOG_LIMIT = 200
# Planner statistics are refreshed when a listing has created this many rows, and at its end.
ANALYZE_AT = (1_000, 100_000)


@dataclass(frozen=True)
class SyncOptions:
    page_size: int = 100
    window_margin: timedelta = timedelta(seconds=120)
    delete_cap: float = 0.05
    allow_mass_delete: bool = False
    resource_attempts: int = 3
    resource_retry_delay: float = 10.0
    heartbeat_seconds: float = 15.0
    verify_limit: int = 2000

    @classmethod
    def from_settings(cls, **overrides: Any) -> SyncOptions:
        values = {
            "window_margin": timedelta(seconds=settings.SYNC_WINDOW_MARGIN_SECONDS),
            "delete_cap": settings.SYNC_DELETE_CAP,
            "resource_attempts": settings.SYNC_RESOURCE_ATTEMPTS,
            "resource_retry_delay": settings.SYNC_RESOURCE_RETRY_DELAY,
            "heartbeat_seconds": settings.SYNC_HEARTBEAT_SECONDS,
        }
        values.update(overrides)
        return cls(**values)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


class Heartbeat:
    """Stamps `heartbeat_at` on a private connection every few seconds while a run works, so a
    run whose worker was killed can be told from one that is only waiting on the PMS."""

    def __init__(self, run: SyncRun, interval: float) -> None:
        self.run_id, self.org_id, self.claim, self.interval = run.pk, run.organization_id, run.claim, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"sync-heartbeat-{run.pk}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        db = connections.create_connection(DEFAULT_DB_ALIAS)
        try:
            while not self._stop.wait(self.interval):
                try:
                    with db.cursor() as cursor:
                        db.set_autocommit(False)
                        cursor.execute("SELECT set_config('app.org_id', %s, true)", [self.org_id])
                        cursor.execute(
                            f'UPDATE "{SyncRun._meta.db_table}" SET heartbeat_at = now()'
                            " WHERE id = %s AND organization_id = %s AND claim = %s AND status = 'running'",
                            [self.run_id, self.org_id, self.claim],
                        )
                    db.commit()
                except DatabaseError:
                    logger.warning("sync run %s: heartbeat failed", self.run_id)
                    db.close()
        finally:
            db.close()


class SyncEngine:
    def __init__(
        self,
        run: SyncRun,
        *,
        organization: Organization,
        connection: PmsConnection,
        adapter: base.PmsAdapter,
        counter: base.EventCounter,
        options: SyncOptions,
        clock: Callable[[], datetime] = timezone.now,
        sleep: Callable[[float], None] = time.sleep,
        progress: Callable[[SyncRun], None] | None = None,
    ) -> None:
        self.run = run
        self.organization = organization
        self.connection = connection
        self.adapter = adapter
        self.counter = counter
        self.options = options
        self.clock = clock
        self.sleep = sleep
        self.progress = progress
        # A run taken over from a dead worker goes on counting from what that one committed.
        self.stats: dict[str, dict[str, int]] = {r: dict(c) for r, c in (run.stats or {}).items()}
        self._earlier = (run.requests, run.rate_limited, run.retries)
        self.log: list[dict[str, Any]] = list(run.log or [])
        self.errors: list[PmsError] = []
        self.capped = False
        self._started = time.monotonic()

    # --- the run ----------------------------------------------------------------------------
    def execute(self) -> SyncRun:
        wanted = self.run.resources or list(base.RESOURCES)
        resources = [r for r in base.RESOURCES if r in wanted and r in self.adapter.capabilities.resources]
        self._note("run_started", mode=self.run.mode, resources=resources)
        done: list[str] = []
        fatal: PmsError | None = None
        with Heartbeat(self.run, self.options.heartbeat_seconds):
            for resource in resources:
                self.stats.setdefault(resource, dict.fromkeys(COUNT_NAMES, 0))
                try:
                    self._resource_with_retries(resource)
                    done.append(resource)
                except (PmsAuthFailed, PmsCircuitOpen) as exc:
                    fatal = exc
                    self._resource_failed(resource, exc)
                    break
                except PmsError as exc:
                    self._resource_failed(resource, exc)
        return self._finish(resources, done, fatal)

    def _resource_with_retries(self, resource: str) -> None:
        attempts = max(1, self.options.resource_attempts)
        for attempt in range(1, attempts + 1):
            try:
                self._sync_resource(resource)
                return
            except PmsError as exc:
                if not exc.transient or isinstance(exc, PmsCircuitOpen) or attempt == attempts:
                    raise
                delay = self.options.resource_retry_delay * attempt
                if exc.retry_at is not None:
                    delay = max(delay, exc.retry_at - time.time())
                self._note(
                    "resource_retry",
                    resource=resource,
                    attempt=attempt,
                    code=exc.code,
                    error=exc.message,
                    delay=round(delay, 1),
                )
                self.sleep(delay)

    # --- one resource -------------------------------------------------------------------------
    def _sync_resource(self, resource: str) -> None:
        with tenant_scope(self.organization):
            cursor, _ = SyncCursor.objects.get_or_create(
                organization=self.organization, connection=self.connection, resource=resource
            )
            flight = self._flight(cursor)
            if flight["full"] and not cursor.in_flight:
                reconcile.forget_pass(self.organization, cursor)
            self._cursors.filter(pk=cursor.pk).update(in_flight=flight)
            self._set_current(resource)
        writer = PageWriter(
            organization=self.organization,
            connection=self.connection,
            adapter=self.adapter,
            run_id=self.run.pk,
            now=timezone.now(),
        )
        after, resume = _parse(flight.get("after")), flight["resume"]
        until = self.clock() - self.options.window_margin
        for page in self.adapter.iter_changes(
            resource, after=after, until=until, resume=resume, page_size=self.options.page_size
        ):
            with tenant_scope(self.organization):
                result = writer.write(resource, page.items)
                if flight["full"]:
                    writer.mark_seen(cursor.pk, page.items)
                newest = _parse(flight["max_seen"])
                if page.max_updated_at is not None and (newest is None or page.max_updated_at > newest):
                    flight["max_seen"] = _iso(page.max_updated_at)
                flight["resume"] = page.resume
                self._cursors.filter(pk=cursor.pk).update(in_flight=flight)
                created_before = self.stats.get(resource, {}).get("created", 0)
                self._count(resource, result.counts())
                if any(created_before < mark <= self.stats[resource]["created"] for mark in ANALYZE_AT):
                    refresh_statistics(resource)
                self._save_progress(pages=1, total=page.total, resource=resource)
                self._announce(resource, result)
            # With DEBUG on (development), Django keeps the last 9,000 queries with their
            # parameters (a page each): a long sync must not carry them.
            reset_queries()
        self._complete_listing(resource, cursor, flight, writer, until)

    def _flight(self, cursor: SyncCursor) -> dict[str, Any]:
        """The listing to run: the interrupted one if any (a full pass also serves an
        incremental run), else a fresh one."""
        full = self.run.mode == SyncMode.FULL or cursor.watermark is None
        current = cursor.in_flight
        if current and (current.get("full") or not full):
            self._note("resource_resumed", resource=cursor.resource, full=current.get("full"))
            return dict(current)
        after = None if full else cursor.watermark - self.adapter.lookback
        return {
            "full": full,
            "after": _iso(after),
            "resume": None,
            "max_seen": _iso(cursor.watermark),
            "started_at": _iso(timezone.now()),
        }

    def _complete_listing(
        self, resource: str, cursor: SyncCursor, flight: dict[str, Any], writer: PageWriter, until: datetime
    ) -> None:
        outcome = None
        if flight["full"]:
            outcome = self._reconcile(resource, cursor, writer)
        newest = _parse(flight["max_seen"])
        with tenant_scope(self.organization):
            if self.stats.get(resource, {}).get("created"):
                refresh_statistics(resource)  # what points at these rows looks them up next
            updates: dict[str, Any] = {"in_flight": None, "watermark": min(newest, until) if newest else None}
            if flight["full"]:
                updates["last_full_at"] = timezone.now()
                reconcile.forget_pass(self.organization, cursor)
            self._cursors.filter(pk=cursor.pk).update(**updates)
            self._note(
                "resource_completed",
                resource=resource,
                full=flight["full"],
                counts=self.stats.get(resource),
                reconciliation=outcome.summary() if outcome else None,
            )
            self._save_progress()

    def _reconcile(self, resource: str, cursor: SyncCursor, writer: PageWriter) -> reconcile.Reconciliation:
        limit = self.options.verify_limit
        with tenant_scope(self.organization):
            held, candidates = reconcile.deletion_candidates(
                self.organization, self.connection, cursor, resource, limit=limit
            )
        outcome = reconcile.Reconciliation(held=held, candidates=len(candidates))
        if not candidates:
            with tenant_scope(self.organization):
                self._save_reconciliation(resource, outcome)
            return outcome
        if len(candidates) > limit:
            outcome.capped = True
            outcome.reason = f"more than {limit} {resource} rows are no longer listed; nothing was removed"
        elif not self.adapter.capabilities.lookup_by_id:
            outcome.capped = True
            outcome.reason = (
                f"{len(candidates)} {resource} rows are no longer listed; this PMS cannot"
                " confirm deletions by id, so nothing was removed"
            )
        else:
            found, missing = reconcile.confirm_missing(self.adapter, resource, candidates)
            outcome.still_present = len(found)
            with tenant_scope(self.organization):
                stored = reconcile.store_found(writer, resource, found)
                reconcile.apply_removals(
                    self.organization,
                    resource,
                    missing,
                    outcome,
                    cap=self.options.delete_cap,
                    allow_mass_delete=self.options.allow_mass_delete,
                )
                if stored is not None:
                    self._count(resource, {**stored.counts(), "fetched": 0})
                    self._announce(resource, stored)
                if outcome.removed_ids:
                    self._count(resource, {"deleted": len(outcome.removed_ids)})
                    self._announce_removed(resource, outcome.removed_ids)
        self.capped = self.capped or outcome.capped
        with tenant_scope(self.organization):
            self._save_reconciliation(resource, outcome)
        return outcome

    # --- bookkeeping ------------------------------------------------------------------------------
    def _count(self, resource: str, counts: dict[str, int]) -> None:
        totals = self.stats.setdefault(resource, dict.fromkeys(COUNT_NAMES, 0))
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value

    @property
    def _cursors(self) -> Any:
        return SyncCursor.objects.for_org(self.organization)

    def _update_run(self, **fields: Any) -> None:
        """Write the run's state, if it is still ours (see the module docstring)."""
        updated = (
            SyncRun.objects.for_org(self.organization)
            .filter(pk=self.run.pk, claim=self.run.claim, status=SyncStatus.RUNNING)
            .update(**fields)
        )
        if not updated:
            raise RunLost(f"sync run {self.run.pk} was taken over by another worker")

    def _set_current(self, resource: str) -> None:
        self.run.current_resource = resource
        self._update_run(current_resource=resource)

    def _save_progress(
        self, *, pages: int = 0, total: int | None = None, resource: str | None = None
    ) -> None:
        run = self.run
        run.pages += pages
        run.stats = self.stats
        run.requests = self._earlier[0] + self.counter.requests
        run.rate_limited = self._earlier[1] + self.counter.rate_limited
        run.retries = self._earlier[2] + self.counter.retries
        run.heartbeat_at = timezone.now()
        run.log = self.log[-LOG_LIMIT:]
        if resource is not None and total is not None:
            self.stats[resource]["listed_total"] = max(self.stats[resource].get("listed_total", 0), total)
        self._update_run(
            pages=run.pages,
            stats=run.stats,
            requests=run.requests,
            rate_limited=run.rate_limited,
            retries=run.retries,
            heartbeat_at=run.heartbeat_at,
            log=run.log,
        )
        sync_run_announce("progress", run_summary(run))
        if self.progress is not None:
            self.progress(run)

    def _save_reconciliation(self, resource: str, outcome: reconcile.Reconciliation) -> None:
        self.run.reconciliation = {**self.run.reconciliation, resource: outcome.summary()}
        self._update_run(reconciliation=self.run.reconciliation)

    def _announce(self, resource: str, result: PageResult) -> None:
        change = RecordsChanged(
            organization_id=self.organization.pk,
            source="sync",
            resource=resource,
            created=tuple(result.created),
            updated=tuple(result.updated),
            patient_ids=tuple(sorted(result.patient_ids)),
            run_id=self.run.pk,
        )
        if not change.is_empty:
            records_changed_announce(change)

    def _announce_removed(self, resource: str, ids: list[int]) -> None:
        records_changed_announce(
            RecordsChanged(
                organization_id=self.organization.pk,
                source="sync",
                resource=resource,
                removed=tuple(ids),
                patient_ids=tuple(ids) if resource == base.PATIENT else (),
                run_id=self.run.pk,
            )
        )

    def _note(self, event: str, **details: Any) -> None:
        entry = {"at": timezone.now().isoformat(), "event": event}
        entry.update({k: v for k, v in details.items() if v is not None})
        self.log.append(entry)

    def _resource_failed(self, resource: str, exc: PmsError) -> None:
        self.errors.append(exc)
        logger.warning("sync run %s: %s failed: %s", self.run.pk, resource, exc.message)
        self._note("resource_failed", resource=resource, code=exc.code, error=exc.message)
        if isinstance(exc, PmsAuthFailed):
            with tenant_scope(self.organization):
                PmsConnection.objects.for_org(self.organization).filter(pk=self.connection.pk).update(
                    status=ConnectionStatus.NEEDS_ATTENTION,
                    status_detail=f"The PMS refused the stored credentials ({exc.message})"[:300],
                    updated_at=timezone.now(),
                )

    def _finish(self, resources: list[str], done: list[str], fatal: PmsError | None) -> SyncRun:
        if len(done) == len(resources) and not self.capped:
            status = SyncStatus.COMPLETED
        elif done:
            status = SyncStatus.PARTIAL
        else:
            status = SyncStatus.FAILED
        run = self.run
        run.status, run.finished_at = status, timezone.now()
        first = fatal or (self.errors[0] if self.errors else None)
        if first is not None:
            run.error_code, run.error_message = first.code, first.message[:500]
        elif self.capped:
            run.error_code = "RECONCILIATION_CAPPED"
            run.error_message = "; ".join(
                v["reason"] for v in run.reconciliation.values() if v.get("capped") and v.get("reason")
            )[:500]
        self._note("run_finished", status=status, seconds=round(time.monotonic() - self._started, 3))
        run.current_resource = ""
        with tenant_scope(self.organization):
            self._save_progress()
            self._update_run(
                status=run.status,
                finished_at=run.finished_at,
                error_code=run.error_code,
                error_message=run.error_message,
                current_resource="",
            )
            if status == SyncStatus.COMPLETED:
                PmsConnection.objects.for_org(self.organization).filter(pk=self.connection.pk).update(
                    last_successful_sync_at=run.finished_at
                )
            records_changed_announce(
                RecordsChanged(
                    organization_id=self.organization.pk,
                    source="sync",
                    run_id=run.pk,
                    final=True,
                    summary={"status": status, "stats": self.stats},
                )
            )
            sync_run_announce("finished", run_summary(run))
        return run


def run_summary(run: SyncRun) -> dict[str, Any]:
    """What a run's announcements carry (no credentials, no personal data)."""
    return {
        "id": run.pk,
        "organization_id": run.organization_id,
        "pms": run.pms,
        "mode": run.mode,
        "status": run.status,
        "current_resource": run.current_resource,
        "pages": run.pages,
        "requests": run.requests,
        "stats": run.stats,
        "error_code": run.error_code,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
    }
