"""Reads on the clinical-commercial record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from clinics.models import Organization, PmsConnection
from patients.models import (
    Appointment,
    ChurnRisk,
    EngagementLevel,
    LifecycleStage,
    Patient,
    PatientProfile,
    ProfileBaseline,
)
from patients.phones import search_variants

NEW_PATIENT_DAYS = 30


def _booked(organization: Organization) -> QuerySet[Appointment]:
    """Appointments that count: not archived, not deleted, not cancelled."""
    return Appointment.objects.for_org(organization).current().filter(cancelled_at__isnull=True)


def patient_sync_stats(organization: Organization, *, now: datetime | None = None) -> dict[str, Any]:
    """How many patients Routiq holds for the organization, and in what state.

    `active` excludes archived, deleted and merged-away records; `new_last_30_days` counts
    records the PMS created in the last 30 days (not rows inserted here).
    """
    now = now or timezone.now()
    current = Q(archived_at__isnull=True, deleted_at__isnull=True, merged_at__isnull=True)
    counts = Patient.objects.for_org(organization).aggregate(
        total=Count("pk"),
        active=Count("pk", filter=current),
        archived=Count("pk", filter=Q(archived_at__isnull=False) & Q(merged_at__isnull=True)),
        merged=Count("pk", filter=Q(merged_at__isnull=False)),
        with_email=Count("pk", filter=current & ~Q(email_normalized="")),
        with_mobile=Count("pk", filter=current & ~Q(mobile_e164="")),
        new_last_30_days=Count("pk", filter=Q(pms_created_at__gte=now - timedelta(days=NEW_PATIENT_DAYS))),
        last_synced_at=Max("last_synced_at"),
    )
    booked = _booked(organization).filter(patient__isnull=False)
    counts["with_appointments"] = booked.values("patient_id").distinct().count()
    counts["with_upcoming_appointments"] = (
        booked.filter(starts_at__gte=now).values("patient_id").distinct().count()
    )
    return counts


def patient_sync_details(
    organization: Organization, *, with_appointments_only: bool, limit: int, now: datetime | None = None
) -> list[Patient]:
    """The first `limit` patients by name, each with its appointment counts (one query)."""
    now = now or timezone.now()
    booked = _booked(organization).filter(patient=OuterRef("pk"))

    def count_of(appointments: QuerySet[Appointment]) -> Any:
        counted = appointments.order_by().values("patient").annotate(n=Count("pk")).values("n")
        return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))

    patients = Patient.objects.for_org(organization).annotate(
        appointment_count=count_of(booked),
        upcoming_appointment_count=count_of(booked.filter(starts_at__gte=now)),
    )
    if with_appointments_only:
        patients = patients.filter(Exists(booked))
    return list(patients.order_by("last_name", "first_name", "pk")[:limit])


# --- patient profiles ------------------------------------------------------------------------------
# Every ordering ends with the patient id, so paging never repeats or skips a patient.
PROFILE_ORDERINGS: dict[str, tuple[Any, ...]] = {
    "priority": ("action_priority", "-value_at_risk", "patient_id"),
    "risk": ("-churn_risk_score", "-value_at_risk", "patient_id"),
    "value": ("-estimated_lifetime_value", "patient_id"),
    "days_since_last_visit": (F("last_attended_at").asc(nulls_last=True), "patient_id"),
    "name": ("patient__last_name", "patient__first_name", "patient_id"),
}


@dataclass(frozen=True)
class ProfileFilters:
    search: str | None = None
    engagement_level: str | None = None
    churn_risk: str | None = None
    lifecycle_stage: str | None = None
    has_upcoming: bool | None = None
    practitioner_id: int | None = None
    location_id: int | None = None


def patient_profiles(organization: Organization) -> QuerySet[PatientProfile]:
    return PatientProfile.objects.for_org(organization).select_related("patient")


def patient_profile_list(
    organization: Organization,
    *,
    filters: ProfileFilters,
    ordering: str = "priority",
    now: datetime | None = None,
) -> QuerySet[PatientProfile]:
    """Profiles matching every filter, in a stable order. `search` matches names and emails
    literally (ignoring case) and phone numbers in any common spelling."""
    now = now or timezone.now()
    profiles = patient_profiles(organization)
    exact = {
        "engagement_level": filters.engagement_level,
        "churn_risk": filters.churn_risk,
        "lifecycle_stage": filters.lifecycle_stage,
        "primary_practitioner_id": filters.practitioner_id,
        "primary_location_id": filters.location_id,
    }
    profiles = profiles.filter(**{name: value for name, value in exact.items() if value is not None})
    if filters.has_upcoming is not None:
        upcoming = Q(next_appointment_at__gt=now)
        profiles = profiles.filter(
            upcoming if filters.has_upcoming else ~upcoming | Q(next_appointment_at=None)
        )
    if filters.search:
        profiles = profiles.filter(_patient_search(filters.search, organization.country))
    return profiles.order_by(*PROFILE_ORDERINGS[ordering])


def _patient_search(text: str, country: str) -> Q:
    condition = (
        Q(patient__first_name__icontains=text)
        | Q(patient__last_name__icontains=text)
        | Q(patient__preferred_first_name__icontains=text)
        | Q(patient__email_normalized__contains=text.casefold())
    )
    parts = text.split()
    if len(parts) == 2:  # "Jane Citizen"
        condition |= Q(patient__first_name__iexact=parts[0], patient__last_name__iexact=parts[1])
    variants = search_variants(text, country)
    if variants:
        condition |= Q(patient__phones_e164__overlap=variants)
    return condition


def patient_profile_get(organization: Organization, *, patient_id: int) -> PatientProfile:
    """One patient's profile (`PatientProfile.DoesNotExist` for missing and foreign alike)."""
    if not 0 < patient_id < 2**63:
        raise PatientProfile.DoesNotExist
    return patient_profiles(organization).get(patient_id=patient_id)


def patient_profile_summary(organization: Organization) -> dict[str, Any]:
    """The frontend's counts (engagement and risk), by stage, and the value at risk."""
    counts = PatientProfile.objects.for_org(organization).aggregate(
        total_patients=Count("pk"),
        **{level: Count("pk", filter=Q(engagement_level=level)) for level in EngagementLevel.values},
        **{f"{band}_risk": Count("pk", filter=Q(churn_risk=band)) for band in ChurnRisk.values},
        **{f"stage_{stage}": Count("pk", filter=Q(lifecycle_stage=stage)) for stage in LifecycleStage.values},
        value_at_risk=Sum("value_at_risk"),
        estimated_lifetime_value=Sum("estimated_lifetime_value"),
        with_upcoming=Count("pk", filter=Q(next_appointment_at__gt=timezone.now())),
        generated_at=Max("generated_at"),
    )
    stages = {stage: counts.pop(f"stage_{stage}") for stage in LifecycleStage.values}
    return {
        **counts,
        "by_lifecycle_stage": stages,
        "value_at_risk": counts["value_at_risk"] or Decimal("0"),
        "estimated_lifetime_value": counts["estimated_lifetime_value"] or Decimal("0"),
    }


def patient_profile_debug(organization: Organization, *, now: datetime | None = None) -> dict[str, Any]:
    """What an admin needs to trust (or doubt) the profiles: freshness, coverage, settings."""
    now = now or timezone.now()
    profiles = PatientProfile.objects.for_org(organization)
    times = profiles.aggregate(oldest=Min("generated_at"), newest=Max("generated_at"), n=Count("pk"))
    patients = Patient.objects.for_org(organization)
    baseline = ProfileBaseline.objects.for_org(organization).first()
    connections = [
        {"pms": c.kind, "status": c.status, "last_successful_sync_at": c.last_successful_sync_at}
        for c in PmsConnection.objects.for_org(organization).order_by("kind")
    ]
    return {
        "patients": patients.count(),
        "profiles": times["n"],
        "patients_without_profile": patients.filter(profile__isnull=True).count(),
        "expired_profiles": profiles.filter(valid_until__lte=now).count(),
        "profiles_generated": {"oldest": times["oldest"], "newest": times["newest"]},
        "baseline": None
        if baseline is None
        else {
            "median_interval_days": baseline.median_interval_days,
            "interval_gaps": baseline.interval_gaps,
            "average_visit_value": baseline.average_visit_value,
            "generated_at": baseline.generated_at,
        },
        "thresholds": organization.retention.to_json(),
        "connections": connections,
    }


def organization_data_as_of(organization: Organization) -> datetime | None:
    """When the data held was last brought up to date from the PMS (the newest completed sync;
    for data loaded in bulk, its load time)."""
    synced = PmsConnection.objects.for_org(organization).aggregate(at=Max("last_successful_sync_at"))["at"]
    if synced is not None:
        return synced
    return Patient.objects.for_org(organization).aggregate(at=Max("last_synced_at"))["at"]
