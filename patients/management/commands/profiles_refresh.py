from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.models import Organization
from patients.api.answers import answers_warm
from patients.profiles import profiles_refresh_all, profiles_refresh_expired


class Command(BaseCommand):
    help = (
        "Recompute patient profiles: every profile of the organization (or of every organization "
        "with --all), or only the expired ones with --expired; then warm the cached answers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("org_id", nargs="?")
        parser.add_argument("--all", action="store_true", help="every organization")
        parser.add_argument("--expired", action="store_true", help="only profiles past valid_until")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["org_id"]) == options["all"]:
            raise CommandError("name one organization, or pass --all")
        organizations = Organization.objects.order_by("pk")
        if options["org_id"]:
            organizations = organizations.filter(pk=options["org_id"])
            if not organizations.exists():
                raise CommandError(f"no organization {options['org_id']!r}")
        refresh = profiles_refresh_expired if options["expired"] else profiles_refresh_all
        for organization in organizations:
            result = refresh(organization)
            warmed = answers_warm(organization)
            self.stdout.write(
                f"{organization.pk}: {result.patients} profiles in {result.seconds:.2f} s; "
                f"warmed {', '.join(warmed) or 'nothing'}"
            )
