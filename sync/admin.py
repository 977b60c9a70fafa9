from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from clinics.admin import PmsConnectionAdmin
from clinics.audit import audit_record
from clinics.models import PmsConnection
from routiq.admin_tools import ReadOnlyAdmin
from sync import services
from sync.models import QuarantinedRecord, SyncCursor, SyncMode, SyncRun, SyncTrigger


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "organization",
        "pms",
        "mode",
        "trigger",
        "status",
        "requests",
        "duration",
        "error_code",
    )
    list_filter = ("status", "mode", "trigger", "pms", "organization")
    search_fields = ("=id", "organization__name", "organization__id", "error_code")
    list_select_related = ("organization",)
    readonly_fields = (
        "organization",
        "connection",
        "pms",
        "mode",
        "resources",
        "trigger",
        "requested_by",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "worker",
        "current_resource",
        "pages",
        "requests",
        "rate_limited",
        "retries",
        "error_code",
        "error_message",
        "counts",
        "reconciliation_summary",
        "log_entries",
    )
    exclude = ("stats", "reconciliation", "log")

    @admin.display(description="Duration")
    def duration(self, run: SyncRun) -> str:
        seconds = run.duration_seconds
        return "" if seconds is None else f"{seconds:.1f} s"

    @admin.display(description="Counts per resource")
    def counts(self, run: SyncRun) -> str:
        return _pretty(run.stats)

    @admin.display(description="Reconciliation")
    def reconciliation_summary(self, run: SyncRun) -> str:
        return _pretty(run.reconciliation)

    @admin.display(description="Log")
    def log_entries(self, run: SyncRun) -> str:
        return _pretty(run.log)


@admin.register(QuarantinedRecord)
class QuarantinedRecordAdmin(ReadOnlyAdmin):
    list_display = ("last_seen_at", "organization", "resource", "external_id", "error", "times_seen")
    list_filter = ("resource", "organization")
    search_fields = ("=external_id", "error")
    list_select_related = ("organization",)
    readonly_fields = (
        "organization",
        "connection",
        "resource",
        "external_id",
        "error",
        "run",
        "first_seen_at",
        "last_seen_at",
        "times_seen",
        "raw_payload",
    )
    exclude = ("payload",)

    @admin.display(description="Payload as the PMS sent it")
    def raw_payload(self, record: QuarantinedRecord) -> str:
        return _pretty(record.payload)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Dismissing an entry is allowed; the next sync brings it back if it is still bad.
        return request.user.has_perm("sync.delete_quarantinedrecord")


@admin.register(SyncCursor)
class SyncCursorAdmin(ReadOnlyAdmin):
    list_display = ("organization", "connection", "resource", "watermark", "last_full_at", "in_progress")
    list_filter = ("resource", "organization")
    list_select_related = ("organization", "connection")

    @admin.display(boolean=True, description="Listing in progress")
    def in_progress(self, cursor: SyncCursor) -> bool:
        return cursor.in_flight is not None


def _pretty(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, default=str))


admin.site.unregister(PmsConnection)


@admin.register(PmsConnection)
class PmsConnectionSyncAdmin(PmsConnectionAdmin):
    """The connection admin of `clinics`, plus the sync actions (the sync layer adds them so
    that `clinics` never imports `sync`)."""

    actions = ["sync_now", "full_sync_now"]

    @admin.action(description="Sync now (changes since the last sync)")
    def sync_now(self, request: HttpRequest, queryset: QuerySet[PmsConnection]) -> None:
        self._trigger(request, queryset, SyncMode.INCREMENTAL)

    @admin.action(description="Full sync now (re-read everything, reconcile deletions)")
    def full_sync_now(self, request: HttpRequest, queryset: QuerySet[PmsConnection]) -> None:
        self._trigger(request, queryset, SyncMode.FULL)

    def _trigger(self, request: HttpRequest, queryset: QuerySet[PmsConnection], mode: str) -> None:
        for connection in queryset.select_related("organization"):
            run, created = services.sync_run_request(
                connection.organization,
                connection=connection,
                mode=mode,
                trigger=SyncTrigger.ADMIN,
                requested_by=request.user.get_username(),
            )
            link = reverse("admin:sync_syncrun_change", args=[run.pk])
            if created:
                services.sync_run_enqueue(run)
                audit_record(
                    connection.organization,
                    actor=request,
                    action="sync.trigger",
                    object_type="sync_run",
                    object_id=run.pk,
                    details={"mode": mode, "via": "admin"},
                )
                self.message_user(
                    request,
                    format_html('Queued <a href="{}">sync {}</a> of {}.', link, run.pk, connection),
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    format_html(
                        '<a href="{}">Sync {}</a> of {} is already {}.', link, run.pk, connection, run.status
                    ),
                    messages.WARNING,
                )
