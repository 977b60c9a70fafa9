from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.audit import audit_record
from clinics.rls import tenant_scope
from patients import privacy
from patients.management.commands._privacy import ACTOR, organization_or_fail, patient_id_or_fail
from patients.models import Patient


class Command(BaseCommand):
    help = "Print everything held about one patient as JSON (audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("org_id")
        parser.add_argument("patient_id")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = organization_or_fail(options["org_id"])
        patient_id = patient_id_or_fail(options["patient_id"])
        try:
            with tenant_scope(organization):
                data = privacy.patient_export(organization, patient_id=patient_id)
                audit_record(
                    organization,
                    actor=ACTOR,
                    action="patient.export",
                    object_type="patient",
                    object_id=patient_id,
                )
        except Patient.DoesNotExist:
            raise CommandError(f"no patient {patient_id} in {organization.pk}") from None
        self.stdout.write(json.dumps(data, ensure_ascii=False, indent=2))
