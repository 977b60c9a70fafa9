"""django-q2 task entry points: thin wrappers taking ids (safe to run twice)."""

from __future__ import annotations

from sync import services


def sync_run_task(run_id: int, organization_id: str) -> str:
    """Carry out a queued run; a second delivery finds it claimed or finished and does nothing."""
    run = services.sync_run_execute(run_id, organization_id)
    return "not claimed" if run is None else run.status


def sync_scheduled_task(connection_id: int) -> str:
    run = services.sync_scheduled_run(connection_id)
    return "skipped" if run is None else run.status
