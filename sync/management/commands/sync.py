from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.models import Organization
from clinics.rls import tenant_scope
from sync import selectors, services
from sync.engine.runner import SyncOptions
from sync.models import FINISHED_STATUSES, SyncMode, SyncRun, SyncStatus, SyncTrigger
from sync.pms import base

BAR_WIDTH = 24


class Command(BaseCommand):
    help = (
        "Sync an organization's PMS connection: incremental by default, --full to re-read everything "
        "and remove what the PMS deleted. Queued for the worker and followed here, or --inline."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("org_id")
        parser.add_argument("--full", action="store_true", help="Re-read everything and reconcile deletions")
        parser.add_argument("--inline", action="store_true", help="Run here instead of on the worker")
        parser.add_argument("--pms", choices=["cliniko", "nookal"], help="Needed when there are several")
        parser.add_argument("--resources", default="", help=f"Comma list of {', '.join(base.RESOURCES)}")
        parser.add_argument(
            "--allow-mass-delete",
            action="store_true",
            help="With --full and --inline: remove what the PMS no longer lists even above the 5%% cap",
        )
        parser.add_argument("--no-wait", action="store_true", help="Queue it and return at once")

    def handle(self, *args: Any, **options: Any) -> None:
        organization = Organization.objects.filter(pk=options["org_id"]).first()
        if organization is None:
            raise CommandError(f"no organization {options['org_id']!r}")
        resources = [r.strip() for r in options["resources"].split(",") if r.strip()]
        if options["allow_mass_delete"] and not (options["full"] and options["inline"]):
            raise CommandError("--allow-mass-delete needs --full and --inline")
        with tenant_scope(organization):
            connection = selectors.pms_connection_for(organization, kind=options["pms"])
        if connection is None:
            raise CommandError(
                f"{organization.pk} has no such PMS connection (use --pms when it has several)"
            )
        mode = SyncMode.FULL if options["full"] else SyncMode.INCREMENTAL
        common = {
            "connection": connection,
            "mode": mode,
            "trigger": SyncTrigger.COMMAND,
            "requested_by": "manage.py sync",
            "resources": resources,
        }
        try:
            if options["inline"]:
                sync_options = SyncOptions.from_settings(allow_mass_delete=options["allow_mass_delete"])
                run, created = services.sync_run_now(
                    organization, options=sync_options, progress=self._progress, **common
                )
            else:
                run, created = services.sync_run_request(organization, **common)
                if created:
                    with tenant_scope(organization):
                        services.sync_run_enqueue(run)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not created:
            self.stdout.write(f"Sync {run.pk} is already {run.status}; following it.")
        elif not options["inline"]:
            self.stdout.write(f"Queued sync {run.pk}; the worker (manage.py qcluster) carries it out.")
        if options["no_wait"]:
            return
        if run.status not in FINISHED_STATUSES:
            run = self._follow(organization, run)
        self._report(run)

    def _follow(self, organization: Organization, run: SyncRun) -> SyncRun:
        try:
            while True:
                with tenant_scope(organization):
                    run = selectors.sync_run_get(organization, run_id=run.pk)
                if run.status in FINISHED_STATUSES:
                    return run
                self._progress(run)
                time.sleep(1)
        except KeyboardInterrupt:
            self.stdout.write(f"\nStopped following; sync {run.pk} goes on.")
            raise SystemExit(130) from None

    def _progress(self, run: SyncRun) -> None:
        resource = run.current_resource
        counts = (run.stats or {}).get(resource, {})
        done, total = counts.get("fetched", 0), counts.get("listed_total", 0)
        filled = min(BAR_WIDTH, round(BAR_WIDTH * done / total)) if total else 0
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        line = (
            f"{resource or run.status:<17} [{bar}] {done:>9,}/{total:<9,} "
            f"{run.requests:,} requests, {run.rate_limited} x 429, {run.retries} retries"
        )
        if sys.stdout.isatty():
            self.stdout.write(f"\r{line}", ending="")
            self.stdout.flush()
        elif run.pages % 50 == 0:
            self.stdout.write(line)

    def _report(self, run: SyncRun) -> None:
        self.stdout.write("")
        for resource, counts in (run.stats or {}).items():
            shown = ", ".join(
                f"{name} {counts.get(name, 0):,}"
                for name in ("fetched", "created", "updated", "unchanged", "archived", "deleted", "failed")
            )
            self.stdout.write(f"  {resource:<17} {shown}")
        summary = (
            f"Sync {run.pk} {run.status} in {run.duration_seconds or 0:.1f} s: {run.pages:,} pages, "
            f"{run.requests:,} requests, {run.rate_limited} rate-limited, {run.retries} retries"
        )
        if run.status == SyncStatus.COMPLETED:
            self.stdout.write(self.style.SUCCESS(summary))
        elif run.status == SyncStatus.PARTIAL:
            self.stdout.write(self.style.WARNING(f"{summary}\n  {run.error_code}: {run.error_message}"))
        else:
            raise CommandError(f"{summary}\n  {run.error_code}: {run.error_message}")
