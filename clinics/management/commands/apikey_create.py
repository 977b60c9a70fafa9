from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.audit import audit_record
from clinics.auth.api_keys import api_key_create
from clinics.models import Organization, Role
from clinics.rls import tenant_scope


class Command(BaseCommand):
    help = "Create an organization API key for a machine client. The key is printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("org_id")
        parser.add_argument("--name", required=True)
        parser.add_argument("--role", default=Role.READ_ONLY, choices=Role.values)

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(pk=options["org_id"]).first()
        if organization is None:
            raise CommandError(f"no organization {options['org_id']!r}")
        try:
            with tenant_scope(organization):
                issued = api_key_create(organization, name=options["name"], role=options["role"])
                audit_record(
                    organization,
                    actor="manage.py",
                    action="api_key.create",
                    object_type="api_key",
                    object_id=issued.api_key.pk,
                    details={"role": issued.api_key.role},
                )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stderr.write(
            f"Created {issued.api_key} with role {issued.api_key.role}. Store it now; it is not shown again:"
        )
        self.stdout.write(issued.plaintext)
