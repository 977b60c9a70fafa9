"""Privacy tools: export one patient, anonymise one patient, purge what is past retention.

Anonymising keeps the appointments and invoices (the clinic's figures stay true) and erases
what identifies the person. The sync writes through `patient_sync_fields`, which drops
personal fields for an anonymised patient, so the next sync cannot bring them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models.functions import Coalesce
from django.forms.models import model_to_dict
from django.utils import timezone

from clinics.models import Organization
from patients.models import Appointment, Invoice, Patient
from patients.profiles import profiles_refresh_all
from patients.profiles.cache import profiles_changed

# Everything that identifies a person; set to these values when anonymising.
PERSONAL_FIELDS: dict[str, Any] = {
    "first_name": "Anonymised",
    "last_name": "Patient",
    "preferred_first_name": "",
    "title": "",
    "date_of_birth": None,
    "email": "",
    "email_normalized": "",
    "phone_numbers": [],
    "phones_e164": [],
    "mobile_e164": "",
    "city": "",
    "state": "",
    "post_code": "",
}


def patient_sync_fields(patient: Patient | None, mapped_fields: dict[str, Any]) -> dict[str, Any]:
    """The fields a sync may write onto `patient`: no personal ones once it is anonymised."""
    if patient is None or patient.anonymised_at is None:
        return mapped_fields
    return {name: value for name, value in mapped_fields.items() if name not in PERSONAL_FIELDS}


def patient_export(organization: Organization, *, patient_id: int) -> dict[str, Any]:
    """Everything Routiq holds about one patient, as JSON-ready data."""
    patient = Patient.objects.for_org(organization).get(pk=patient_id)
    appointments = Appointment.objects.for_org(organization).filter(patient=patient).order_by("starts_at")
    invoices = Invoice.objects.for_org(organization).filter(patient=patient).order_by("issue_date", "pk")
    return {
        "organization_id": organization.pk,
        "exported_at": timezone.now().isoformat(),
        "patient": {"id": patient.pk, **_plain(model_to_dict(patient, exclude=["organization"]))},
        "appointments": [
            {"id": a.pk, "outcome": a.outcome_at(), **_plain(model_to_dict(a, exclude=["organization"]))}
            for a in appointments
        ],
        "invoices": [{"id": i.pk, **_plain(model_to_dict(i, exclude=["organization"]))} for i in invoices],
    }


def patient_anonymise(organization: Organization, *, patient_id: int) -> Patient:
    with transaction.atomic():
        patient = Patient.objects.for_org(organization).select_for_update().get(pk=patient_id)
        for name, value in PERSONAL_FIELDS.items():
            setattr(patient, name, value)
        patient.anonymised_at = patient.anonymised_at or timezone.now()
        patient.save(update_fields=[*PERSONAL_FIELDS, "anonymised_at"])
        Appointment.objects.for_org(organization).filter(patient=patient).update(cancellation_note="")
        # Answers cached about the profiles carry the patient's name and contacts.
        profiles_changed(organization.pk)
    return patient


@dataclass(frozen=True)
class PurgeResult:
    cutoff: str
    appointments: int
    invoices: int
    patients: int
    dry_run: bool


def retention_purge(organization: Organization, *, dry_run: bool = False) -> PurgeResult:
    """Delete records older than the organization's retention horizon.

    Appointments and invoices before the horizon go; a patient goes when nothing of theirs
    remains and the PMS has not touched them since the horizon.
    """
    cutoff = timezone.now() - timedelta(days=organization.retention.data_retention_days)
    appointments = Appointment.objects.for_org(organization).filter(starts_at__lt=cutoff)
    invoices = Invoice.objects.for_org(organization).filter(issue_date__lt=cutoff.date())
    with transaction.atomic():
        counts = {"appointments": appointments.count(), "invoices": invoices.count()}
        if not dry_run:
            invoices.delete()
            appointments.delete()
        stale_patients = (
            Patient.objects.for_org(organization)
            .annotate(touched_at=Coalesce("pms_updated_at", "pms_created_at"))
            .filter(touched_at__lt=cutoff)
            .exclude(appointments__starts_at__gte=cutoff)
            .exclude(invoices__issue_date__gte=cutoff.date())
        )
        counts["patients"] = stale_patients.count()
        if not dry_run:
            Patient.objects.for_org(organization).filter(pk__in=stale_patients.values("pk")).delete()
    if not dry_run and any(counts.values()):
        # The remaining patients' histories are shorter now: their profiles change with them.
        profiles_refresh_all(organization)
    return PurgeResult(cutoff=cutoff.isoformat(), dry_run=dry_run, **counts)


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    result = {}
    for key, value in data.items():
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif value.__class__.__name__ == "Decimal":
            value = str(value)
        result[key] = value
    return result
