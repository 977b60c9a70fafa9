from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from routiq import db_roles


class Command(BaseCommand):
    help = (
        "Print the SQL that creates the owner and application roles for row-level security on an "
        "external PostgreSQL server (run it as a superuser). The embedded server needs nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default="routiq")
        parser.add_argument("--owner", default=db_roles.OWNER_ROLE)
        parser.add_argument("--app", default=db_roles.APP_ROLE)

    def handle(self, *args: Any, **options: Any) -> None:
        owner, app, database = options["owner"], options["app"], options["database"]
        self.stdout.write(
            "-- As a superuser, connected to any database (then set passwords for both roles):"
        )
        for statement in db_roles.cluster_sql(owner=owner, app=app, database=database):
            self.stdout.write(f"{statement};")
        self.stdout.write(f"-- As a superuser, connected to {database}:")
        for statement in db_roles.database_sql(owner=owner, app=app):
            self.stdout.write(f"{statement};")
        self.stdout.write(
            f"-- Then: DATABASE_OWNER_URL=postgresql://{owner}:...@host/{database} for migrations,"
            f" DATABASE_URL=postgresql://{app}:...@host/{database} for the product."
        )
