from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics import selectors, services
from clinics.audit import audit_record
from clinics.models import Organization
from clinics.rls import tenant_scope
from clinics.tenancy import PmsKind


class Command(BaseCommand):
    help = "Connect an organization to its PMS. The API key is stored encrypted and never shown."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("org_id")
        parser.add_argument("kind", choices=PmsKind.values)
        parser.add_argument("--api-key", required=True)
        parser.add_argument("--base-url", default=None, help="Override for sandboxes and simulators")
        parser.add_argument(
            "--rate-limit", type=int, default=None,
            help="The PMS's requests per minute for this account, if not its default (0: the default)",
        )
        parser.add_argument("--sync-interval", type=int, default=None, help="Minutes between syncs; 0: none")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            organization = selectors.organization_get(options["org_id"])
        except Organization.DoesNotExist:
            raise CommandError(f"no organization {options['org_id']!r}") from None
        try:
            with tenant_scope(organization):
                connection = services.pms_connection_set(
                    organization,
                    kind=options["kind"],
                    api_key=options["api_key"],
                    base_url=options["base_url"],
                    rate_limit_per_minute=options["rate_limit"],
                    sync_interval_minutes=options["sync_interval"],
                )
                audit_record(
                    organization,
                    actor="manage.py",
                    action="pms_connection.set",
                    object_type="pms_connection",
                    object_id=connection.pk,
                    details={"kind": connection.kind},
                )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        hint = f" ({connection.credentials_hint})" if connection.credentials_hint else ""
        self.stdout.write(self.style.SUCCESS(f"Connected {connection}{hint}; key stored encrypted"))
