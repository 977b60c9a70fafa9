from __future__ import annotations

import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sync.demo import DEMO_ORG_ID, DEMO_ORG_NAME, demo_clinic_ensure
from sync.loader import LoadResult
from sync.synthetic import ImpossibleClinicError


class Command(BaseCommand):
    help = "Create the demo organization with a generated clinic and an admin login (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org-id", default=DEMO_ORG_ID)
        parser.add_argument("--name", default=DEMO_ORG_NAME)
        parser.add_argument("--patients", type=int, default=2000, help="50 to 50,000")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--time-zone", default="Australia/Melbourne")
        parser.add_argument("--reset", action="store_true", help="Delete the organization's data first")
        parser.add_argument("--admin-username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()

        def progress(result: LoadResult) -> None:
            self.stdout.write(
                f"  loaded {result.patients:,} patients, {result.appointments:,} appointments, "
                f"{result.invoices:,} invoices ({time.monotonic() - started:.0f} s)"
            )

        try:
            demo = demo_clinic_ensure(
                org_id=options["org_id"],
                name=options["name"],
                patients=options["patients"],
                seed=options["seed"],
                time_zone=options["time_zone"],
                reset=options["reset"],
                admin_username=options["admin_username"],
                progress=progress if options["verbosity"] >= 1 else None,
            )
        except (ImpossibleClinicError, ValidationError) as exc:
            raise CommandError(str(exc)) from None
        org = demo.organization
        if demo.loaded is None:
            self.stdout.write(f"Demo clinic {org} already loaded (use --reset to regenerate).")
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Loaded demo clinic {org}: {demo.loaded.patients:,} patients, "
                    f"{demo.loaded.appointments:,} appointments, {demo.loaded.invoices:,} invoices "
                    f"in {time.monotonic() - started:.1f} s"
                )
            )
        self.stdout.write(f"Admin login: {demo.admin_username} / {demo.admin_password}")
