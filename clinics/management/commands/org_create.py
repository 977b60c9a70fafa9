from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics import services
from clinics.audit import audit_record
from clinics.rls import tenant_scope


class Command(BaseCommand):
    help = "Create an organization (a clinic business) with its Clerk organization id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("org_id", help="Clerk organization id, e.g. org_2xwHiNrj68eaRUlX10anlXGvzX7")
        parser.add_argument("--name", required=True)
        parser.add_argument("--time-zone", default="Australia/Sydney", help="IANA time zone")
        parser.add_argument("--currency", default="AUD")
        parser.add_argument("--country", default="AU", help="ISO 3166 code for local phone numbers")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            organization = services.organization_create(
                org_id=options["org_id"],
                name=options["name"],
                time_zone=options["time_zone"],
                currency=options["currency"],
                country=options["country"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        with tenant_scope(organization):
            audit_record(
                organization,
                actor="manage.py",
                action="organization.create",
                object_type="organization",
                object_id=organization.pk,
            )
        self.stdout.write(self.style.SUCCESS(f"Created {organization}"))
