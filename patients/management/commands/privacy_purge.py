from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from clinics.audit import audit_purge, audit_record
from clinics.rls import tenant_scope
from patients import privacy
from patients.management.commands._privacy import ACTOR, organization_or_fail


class Command(BaseCommand):
    help = "Delete data older than the organization's retention horizon (dry run unless --delete)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("org_id")
        parser.add_argument("--delete", action="store_true", help="really delete (default: count only)")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = organization_or_fail(options["org_id"])
        with tenant_scope(organization):
            result = privacy.retention_purge(organization, dry_run=not options["delete"])
            audit_events = 0
            if options["delete"]:
                audit_events = audit_purge(
                    organization, older_than_days=organization.retention.audit_retention_days
                )
            audit_record(organization, actor=ACTOR, action="retention.purge", details=dict(result.__dict__))
        mode = "dry run, nothing deleted" if result.dry_run else "deleted"
        self.stdout.write(
            f"Before {result.cutoff[:10]} ({mode}): {result.appointments} appointments, "
            f"{result.invoices} invoices, {result.patients} patients; {audit_events} old audit events"
        )
