"""The one announcement that an organization's clinical-commercial records changed.

Whoever writes PMS copies (the sync engine, a layer above this one) calls
`records_changed_announce` inside the transaction that wrote them; subscribers (profile
refresh, live updates) connect to `records_changed` in their `AppConfig.ready()` and hear of it
only after that transaction commits, so nothing is announced that could still roll back.
A subscriber that fails is logged and does not disturb the writer or other subscribers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Sent with `change=RecordsChanged(...)`, sender `RecordsChanged`.
records_changed = Signal()


@dataclass(frozen=True)
class RecordsChanged:
    """What one committed unit of work (a sync page, or the end of a run) changed.

    Ids are Routiq primary keys. `patient_ids` are the patients whose own row, appointments or
    invoices changed: what derived per-patient figures must recompute. `final` marks the
    announcement made when a sync run ends (its counts are in `summary`).
    """

    organization_id: str
    source: str
    resource: str | None = None
    created: tuple[int, ...] = ()
    updated: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    patient_ids: tuple[int, ...] = ()
    run_id: int | None = None
    final: bool = False
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (self.created or self.updated or self.removed or self.patient_ids)


def records_changed_announce(change: RecordsChanged) -> None:
    """Send `records_changed` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: _send(change))


def _send(change: RecordsChanged) -> None:
    for receiver, result in records_changed.send_robust(sender=RecordsChanged, change=change):
        if isinstance(result, Exception):
            logger.error(
                "records_changed subscriber %r failed for %s",
                receiver,
                change.organization_id,
                exc_info=(type(result), result, result.__traceback__),
            )
