from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from clinics.models import PmsConnection
from sync.models import SyncMode, SyncRun

# What the existing frontend sends as `mode`, and what each means here.
MODE_ALIASES = {
    "incremental": (SyncMode.INCREMENTAL, []),
    "full": (SyncMode.FULL, []),
    "comprehensive": (SyncMode.FULL, []),
    "basic": (SyncMode.INCREMENTAL, []),
    "patients-only": (SyncMode.INCREMENTAL, ["patient"]),
}


MODE_CHOICES = sorted(MODE_ALIASES)


def run_status_url(run: SyncRun) -> str:
    return reverse("sync-run-detail", kwargs={"org_id": run.organization_id, "run_id": run.pk})


class SyncCountsSerializer(serializers.Serializer):
    fetched = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    archived = serializers.IntegerField(help_text="Stored archived or deleted, and were not before")
    deleted = serializers.IntegerField(help_text="Removed: the PMS deleted them for good")
    failed = serializers.IntegerField(help_text="Quarantined: could not be stored")


class SyncRunSerializer(serializers.ModelSerializer):
    stats = serializers.DictField(child=SyncCountsSerializer(), help_text="Per resource")
    reconciliation = serializers.DictField(child=serializers.DictField(), help_text="Per resource")
    duration_seconds = serializers.FloatField(allow_null=True)
    status_url = serializers.SerializerMethodField()

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "pms",
            "mode",
            "resources",
            "trigger",
            "requested_by",
            "status",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "current_resource",
            "stats",
            "pages",
            "requests",
            "rate_limited",
            "retries",
            "reconciliation",
            "error_code",
            "error_message",
            "status_url",
        ]
        read_only_fields = fields

    def get_status_url(self, run: SyncRun) -> str:
        return run_status_url(run)

    def to_representation(self, run: SyncRun) -> dict[str, Any]:
        data = super().to_representation(run)
        data["stats"] = {
            resource: {name: value for name, value in counts.items() if name in SyncCountsSerializer().fields}
            for resource, counts in (run.stats or {}).items()
        }
        if self.context.get("include_logs"):
            data["log"] = run.log
        else:
            data.pop("log", None)
        return data


class SyncRunWithLogSerializer(SyncRunSerializer):
    """For the schema: a run as `include_logs=true` returns it."""

    log = serializers.ListField(child=serializers.DictField(), required=False)

    class Meta(SyncRunSerializer.Meta):
        fields = [*SyncRunSerializer.Meta.fields, "log"]
        read_only_fields = fields


class SyncTriggerRequestSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(
        choices=MODE_CHOICES,
        default="incremental",
        help_text="incremental (changes since the last sync) or full (re-read everything and remove what the"
        " PMS deleted). comprehensive = full, basic = incremental, patients-only = incremental of patients.",
    )
    force_full = serializers.BooleanField(default=False, help_text="Same as mode=full")


class AgnosticSyncTriggerRequestSerializer(SyncTriggerRequestSerializer):
    pms = serializers.ChoiceField(
        choices=["cliniko", "nookal"],
        required=False,
        help_text="Which connection; needed only when the organization has more than one",
    )


class SyncTriggeredSerializer(serializers.Serializer):
    run = SyncRunSerializer()
    created = serializers.BooleanField(help_text="False: a run was already queued or running; this is it")
    status_url = serializers.CharField()


class CircuitSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["closed", "open", "half_open"])
    consecutive_failures = serializers.IntegerField()
    retry_at = serializers.DateTimeField(allow_null=True)


class HealthCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    latency_ms = serializers.IntegerField()
    error_code = serializers.CharField(allow_null=True)
    error_message = serializers.CharField(allow_null=True)


class ConnectionStateSerializer(serializers.ModelSerializer):
    class Meta:
        model = PmsConnection
        fields = [
            "kind",
            "status",
            "status_detail",
            "credentials_hint",
            "sync_interval_minutes",
            "created_at",
        ]
        read_only_fields = fields


class SyncStatusSerializer(serializers.Serializer):
    pms = serializers.CharField()
    connected = serializers.BooleanField()
    connection = ConnectionStateSerializer()
    circuit = CircuitSerializer()
    last_successful_sync_at = serializers.DateTimeField(allow_null=True)
    data_age_minutes = serializers.IntegerField(allow_null=True)
    active_run = SyncRunWithLogSerializer(allow_null=True)
    recent_runs = SyncRunWithLogSerializer(many=True)
    health_check = HealthCheckSerializer(required=False)


class PatientStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    active = serializers.IntegerField(help_text="Not archived, deleted or merged away")
    archived = serializers.IntegerField()
    merged = serializers.IntegerField()
    with_email = serializers.IntegerField()
    with_mobile = serializers.IntegerField()
    with_appointments = serializers.IntegerField()
    with_upcoming_appointments = serializers.IntegerField()
    new_last_30_days = serializers.IntegerField(help_text="Created in the PMS in the last 30 days")
    last_synced_at = serializers.DateTimeField(allow_null=True)
    data_age_minutes = serializers.IntegerField(allow_null=True)


class PatientStatsItemSerializer(serializers.Serializer):
    patient_id = serializers.IntegerField(source="pk")
    cliniko_patient_id = serializers.CharField(source="external_id")
    patient_name = serializers.CharField(source="full_name")
    email = serializers.CharField()
    phone = serializers.CharField(source="mobile_e164")
    is_active = serializers.SerializerMethodField()
    appointment_count = serializers.IntegerField()
    upcoming_appointment_count = serializers.IntegerField()
    last_synced_at = serializers.DateTimeField(allow_null=True)

    def get_is_active(self, patient: Any) -> bool:
        return patient.archived_at is None and patient.deleted_at is None and patient.merged_at is None


class PatientStatsResponseSerializer(serializers.Serializer):
    stats = PatientStatsSerializer()
    patients = PatientStatsItemSerializer(many=True, required=False)
