from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.audit import audit_record
from clinics.rls import tenant_scope
from patients import privacy
from patients.management.commands._privacy import ACTOR, organization_or_fail, patient_id_or_fail
from patients.models import Patient


class Command(BaseCommand):
    help = "Erase one patient's personal data irreversibly (appointments and invoices stay)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("org_id")
        parser.add_argument("patient_id")
        parser.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = organization_or_fail(options["org_id"])
        patient_id = patient_id_or_fail(options["patient_id"])
        if not options["yes"]:
            raise CommandError("anonymising cannot be undone; add --yes to confirm")
        try:
            with tenant_scope(organization):
                patient = privacy.patient_anonymise(organization, patient_id=patient_id)
                audit_record(
                    organization,
                    actor=ACTOR,
                    action="patient.anonymise",
                    object_type="patient",
                    object_id=patient.pk,
                )
        except Patient.DoesNotExist:
            raise CommandError(f"no patient {patient_id} in {organization.pk}") from None
        self.stdout.write(
            self.style.SUCCESS(f"Patient {patient.pk} anonymised at {patient.anonymised_at:%Y-%m-%d %H:%M}")
        )
