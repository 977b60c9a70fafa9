"""Reads on the clinical-commercial record."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Exists, IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from clinics.models import Organization
from patients.models import Appointment, Patient

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
