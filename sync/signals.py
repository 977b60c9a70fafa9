"""What the sync announces about its runs (started, progress after each page, finished).

Live updates subscribe in their `AppConfig.ready()`. Like `patients.changes.records_changed`
(which carries the data changes themselves), it is sent only after the transaction that
recorded the run's new state commits.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Sent with `event` ("started" | "progress" | "finished") and `run` (a JSON-ready summary:
# id, organization_id, status, mode, current_resource, stats, error_code).
sync_run_changed = Signal()


def sync_run_announce(event: str, run: dict[str, Any]) -> None:
    transaction.on_commit(lambda: _send(event, run))


def _send(event: str, run: dict[str, Any]) -> None:
    for receiver, result in sync_run_changed.send_robust(sender=None, event=event, run=run):
        if isinstance(result, Exception):
            logger.error(
                "sync_run_changed subscriber %r failed",
                receiver,
                exc_info=(type(result), result, result.__traceback__),
            )
