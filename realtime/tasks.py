"""django-q2 task entry points (scheduled hourly by migration 0003; safe to run twice)."""

from __future__ import annotations

from realtime.events import events_prune


def events_prune_task() -> int:
    return events_prune()
