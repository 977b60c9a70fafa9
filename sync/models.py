from __future__ import annotations

from django.db import models

from clinics.tenancy import TenantModel


class PacingState(models.Model):
    """One token bucket per PMS user, shared by every process (sync/pms/pacing.py).

    Keyed by a hash of the credential, never the credential, and deliberately without an
    organization column: the budget belongs to the PMS user, whichever tenant spends it. Times
    are Unix seconds from the caller's clock (so tests can run on a fake one).
    """

    key = models.CharField(primary_key=True, max_length=64)
    tokens = models.FloatField()
    updated_at = models.FloatField(help_text="Unix time the tokens were last counted")
    hold_until = models.FloatField(default=0, help_text="Unix time before which nobody may call")

    def __str__(self) -> str:
        return f"pacing {self.key[:12]}…"


class BreakerState(models.Model):
    """One circuit breaker per PMS credential, shared by every process (sync/pms/pacing.py)."""

    key = models.CharField(primary_key=True, max_length=64)
    consecutive_failures = models.IntegerField(default=0)
    open_until = models.FloatField(
        null=True, blank=True, help_text="Unix time the open circuit lets a trial call through; null: closed"
    )
    trial_until = models.FloatField(
        null=True, blank=True, help_text="Unix time a half-open trial call's claim lapses"
    )

    def __str__(self) -> str:
        return f"breaker {self.key[:12]}…"


class SyncMode(models.TextChoices):
    INCREMENTAL = "incremental", "Incremental"
    FULL = "full", "Full (re-read everything and reconcile deletions)"


class SyncTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    API = "api", "API"
    ADMIN = "admin", "Admin"
    COMMAND = "command", "Command"


class SyncStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    PARTIAL = "partial", "Partial"
    FAILED = "failed", "Failed"


ACTIVE_STATUSES = (SyncStatus.QUEUED, SyncStatus.RUNNING)
FINISHED_STATUSES = (SyncStatus.COMPLETED, SyncStatus.PARTIAL, SyncStatus.FAILED)


class SyncRun(TenantModel):
    """One sync of one PMS connection: what was asked, what happened, what it cost.

    `stats` holds per-resource counts (fetched, created, updated, unchanged, archived,
    deleted, failed), written in the same transaction as each page, so they describe what
    is committed. At most one run per connection is queued or running (a partial unique
    index), which is what makes a second trigger get the running one back.
    """

    connection = models.ForeignKey(
        "clinics.PmsConnection", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    pms = models.CharField(max_length=16)
    mode = models.CharField(max_length=16, choices=SyncMode.choices, default=SyncMode.INCREMENTAL)
    resources = models.JSONField(default=list, blank=True, help_text="Resources to sync; empty: all")
    trigger = models.CharField(max_length=16, choices=SyncTrigger.choices)
    requested_by = models.CharField(max_length=150, blank=True)
    status = models.CharField(max_length=16, choices=SyncStatus.choices, default=SyncStatus.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="The worker running it was alive")
    worker = models.CharField(max_length=100, blank=True)
    claim = models.CharField(
        max_length=32, blank=True, help_text="Set by the worker that claimed the run; its writes check it"
    )
    current_resource = models.CharField(max_length=32, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    pages = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    rate_limited = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    reconciliation = models.JSONField(default=dict, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    log = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection"],
                condition=models.Q(status__in=["queued", "running"]),
                name="syncrun_one_active_per_connection",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="syncrun_org_created"),
            models.Index(fields=["connection", "-created_at"], name="syncrun_connection_created"),
        ]

    def __str__(self) -> str:
        return f"Sync {self.pk} of {self.organization_id} ({self.mode}, {self.status})"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or self.heartbeat_at or self.started_at
        return round((end - self.started_at).total_seconds(), 3)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class SyncCursor(TenantModel):
    """Where one resource of one connection stands, saved in the same transaction as each page.

    `watermark` is the newest PMS `updated_at` stored by a completed listing; the next one
    starts at `watermark - lookback`. `in_flight` describes a listing that has not finished:
    the adapter's resume token, the newest `updated_at` stored so far, and whether it is a
    full pass (whose seen ids feed reconciliation). A crash re-reads at most one page.
    """

    connection = models.ForeignKey("clinics.PmsConnection", on_delete=models.CASCADE, related_name="+")
    resource = models.CharField(max_length=32)
    watermark = models.DateTimeField(null=True, blank=True)
    in_flight = models.JSONField(null=True, blank=True)
    last_full_at = models.DateTimeField(null=True, blank=True, help_text="Last completed full pass")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "connection", "resource"], name="synccursor_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource} cursor of connection {self.connection_id}"


class QuarantinedRecord(TenantModel):
    """A PMS record that could not be stored, kept with its raw payload for a person to look at.

    The sync counts it as failed and goes on; when a later sync stores the record, the
    quarantine entry is removed.
    """

    connection = models.ForeignKey("clinics.PmsConnection", on_delete=models.CASCADE, related_name="+")
    resource = models.CharField(max_length=32)
    external_id = models.CharField(max_length=64, blank=True)
    payload = models.JSONField()
    error = models.CharField(max_length=500)
    run = models.ForeignKey(SyncRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    times_seen = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "connection", "resource", "external_id"],
                condition=~models.Q(external_id=""),
                name="quarantine_unique_record",
            ),
        ]
        indexes = [models.Index(fields=["organization", "-last_seen_at"], name="quarantine_org_seen")]

    def __str__(self) -> str:
        return f"Quarantined {self.resource} {self.external_id or '(no id)'}"


class ReconciliationSeen(TenantModel):
    """The ids a full pass has listed so far, per cursor; what is held but missing here at the
    end of the pass is a hard-deletion candidate. Emptied when the pass ends."""

    cursor = models.ForeignKey(SyncCursor, on_delete=models.CASCADE, related_name="+", db_index=False)
    external_id = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cursor", "external_id"], name="reconciliationseen_unique"),
        ]
