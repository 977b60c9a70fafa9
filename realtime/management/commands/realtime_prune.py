"""manage.py realtime_prune: delete live-update events past their retention (also run hourly
by the job queue: `realtime.tasks.events_prune_task`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from realtime.events import events_prune


class Command(BaseCommand):
    help = "Delete events older than REALTIME_EVENT_RETENTION_HOURS or beyond the newest N per organization."

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = events_prune()
        self.stdout.write(
            f"{deleted} events deleted (keeping {settings.REALTIME_EVENT_RETENTION_HOURS:g} h, "
            f"at most {settings.REALTIME_EVENT_KEEP_PER_ORGANIZATION} per organization)"
        )
