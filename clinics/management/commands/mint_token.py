from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.auth.tokens import mint_dev_token
from clinics.models import Organization, Role


class Command(BaseCommand):
    help = "Sign a development session token (Clerk-shaped) with the local key. Never in production."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="organization id")
        parser.add_argument("--role", default=Role.ADMIN, choices=Role.values)
        parser.add_argument("--user", default="user_dev", help="Clerk-style user id (sub)")
        parser.add_argument("--lifetime", type=int, default=3600, help="seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.ROUTIQ_DEV_AUTH:
            raise CommandError("development tokens are disabled (ROUTIQ_DEV_AUTH is off or production mode)")
        if not Organization.objects.filter(pk=options["org"]).exists():
            raise CommandError(f"no organization {options['org']!r}")
        if not 1 <= options["lifetime"] <= 7 * 86400:
            raise CommandError("--lifetime must be between 1 second and 7 days")
        token = mint_dev_token(
            user_id=options["user"],
            org_id=options["org"],
            role=options["role"],
            lifetime_seconds=options["lifetime"],
        )
        self.stdout.write(token)
