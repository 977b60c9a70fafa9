from __future__ import annotations

import re
import zoneinfo
from dataclasses import asdict, dataclass, fields
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from clinics.tenancy import PmsKind, PmsRecord, TenantModel

ORG_ID_RE = re.compile(r"^org_[A-Za-z0-9]{10,60}$")


def validate_org_id(value: str) -> None:
    if not ORG_ID_RE.fullmatch(value or ""):
        raise ValidationError(
            "%(value)s is not a Clerk organization id (org_ followed by letters and digits)",
            code="invalid_org_id",
            params={"value": value},
        )


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            "%(value)s is not an IANA time zone", code="invalid_time_zone", params={"value": value}
        )


@dataclass(frozen=True)
class RetentionSettings:
    """Per-organization thresholds; defaults from ../shared/reference/retention-metrics.md."""

    lapse_soft_days: int = 60
    lapse_hard_days: int = 180
    dormant_days: int = 365
    default_interval_days: int = 21
    late_cancellation_hours: int = 24
    data_retention_days: int = 7 * 365  # clinical records: AU states keep 7 years after last visit
    audit_retention_days: int = 2 * 365
    expected_interval_visits: int = 5
    excluded_appointment_type_ids: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RetentionSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in (data or {}).items() if k in known}
        if "excluded_appointment_type_ids" in values:
            values["excluded_appointment_type_ids"] = tuple(values["excluded_appointment_type_ids"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["excluded_appointment_type_ids"] = list(self.excluded_appointment_type_ids)
        return data

    def validate(self) -> None:
        if not 0 < self.lapse_soft_days < self.lapse_hard_days < self.dormant_days:
            raise ValidationError(
                "thresholds must satisfy 0 < lapse_soft_days < lapse_hard_days < dormant_days",
                code="invalid_thresholds",
            )
        if self.data_retention_days < 365 or self.audit_retention_days < 30:
            raise ValidationError(
                "data_retention_days must be at least 365 and audit_retention_days at least 30",
                code="invalid_thresholds",
            )
        if self.default_interval_days <= 0 or self.late_cancellation_hours <= 0:
            raise ValidationError("intervals must be positive", code="invalid_thresholds")


class Organization(models.Model):
    """A clinic business; the primary key is its Clerk organization id."""

    id = models.CharField(primary_key=True, max_length=64, validators=[validate_org_id])
    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, default="Australia/Sydney", validators=[validate_time_zone])
    currency = models.CharField(max_length=3, default="AUD")
    country = models.CharField(
        max_length=2, default="AU", help_text="ISO 3166 country used to read local phone numbers"
    )
    retention_settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(id__regex=r"^org_[A-Za-z0-9]{10,60}$"), name="organization_id_format"
            ),
            models.CheckConstraint(
                condition=models.Q(currency__regex=r"^[A-Z]{3}$"), name="organization_currency_iso"
            ),
            models.CheckConstraint(
                condition=models.Q(country__regex=r"^[A-Z]{2}$"), name="organization_country_iso"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def retention(self) -> RetentionSettings:
        return RetentionSettings.from_json(self.retention_settings)

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


class Location(PmsRecord):
    """A clinic site (Cliniko business, Nookal location)."""

    name = models.CharField(max_length=200)
    time_zone = models.CharField(max_length=64, blank=True, validators=[validate_time_zone])
    address = models.TextField(blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=100, blank=True)
    post_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=100, blank=True)
    phone = models.CharField(max_length=50, blank=True)

    class Meta(PmsRecord.Meta):
        ordering = ["name"]
        indexes = [models.Index(fields=["organization", "name"], name="location_org_name")]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    STAFF = "staff", "Staff"
    READ_ONLY = "read_only", "Read only"


class Membership(TenantModel):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.STAFF)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="membership_unique_user"),
        ]
        indexes = [models.Index(fields=["user"], name="membership_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization_id} as {self.role}"


class ConnectionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    NEEDS_ATTENTION = "needs_attention", "Needs attention"
    DISABLED = "disabled", "Disabled"


class PmsConnection(TenantModel):
    """How Routiq reaches one organization's PMS. Credentials are encrypted and write-only."""

    kind = models.CharField(max_length=16, choices=PmsKind.choices)
    credentials_ciphertext = models.BinaryField(editable=False)
    credentials_hint = models.CharField(
        max_length=32,
        blank=True,
        editable=False,
        help_text="Non-secret hint such as the Cliniko shard, never any part of the key",
    )
    base_url = models.URLField(
        blank=True, help_text="Override for sandboxes and simulators; blank uses the PMS default"
    )
    status = models.CharField(
        max_length=20, choices=ConnectionStatus.choices, default=ConnectionStatus.ACTIVE
    )
    status_detail = models.CharField(max_length=300, blank=True)
    last_successful_sync_at = models.DateTimeField(null=True, blank=True)
    sync_interval_minutes = models.PositiveIntegerField(
        default=60, help_text="How often the scheduler syncs this connection; 0: only when asked"
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The PMS's request limit for this account when it is not the PMS's default (Cliniko "
        "raises its 200 a minute on request; a sandbox may allow more); Routiq paces just under it",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "kind"], name="pmsconnection_unique_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.organization_id}"

    def __repr__(self) -> str:
        # Never let a debugger or log line print the ciphertext or anything derived from it.
        return f"<PmsConnection {self.pk} {self.kind} org={self.organization_id}>"


class ApiKey(TenantModel):
    """A machine client's credential: one organization, one role. Only a hash is stored."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, unique=True, help_text="Public part, shown to identify the key")
    secret_hash = models.CharField(max_length=64, editable=False)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.READ_ONLY)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "created_at"], name="apikey_org_created")]

    def __str__(self) -> str:
        return f"{self.name} (rq_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AuditEvent(TenantModel):
    """Who did what to which object, when. Patients appear by id only, never by name."""

    occurred_at = models.DateTimeField(auto_now_add=True)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=150, help_text="user id or API key prefix at the time")
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["organization", "-occurred_at"], name="audit_org_time"),
            models.Index(fields=["organization", "object_type", "object_id"], name="audit_org_object"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.object_type}:{self.object_id}"
