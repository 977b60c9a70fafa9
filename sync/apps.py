from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import transaction


class SyncConfig(AppConfig):
    name = "sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Each PMS connection carries its own sync schedule; keep it in step with the row.
        from django.db.models.signals import post_delete, post_save

        from clinics.models import PmsConnection

        post_save.connect(_connection_saved, sender=PmsConnection, dispatch_uid="sync.schedule.save")
        post_delete.connect(_connection_deleted, sender=PmsConnection, dispatch_uid="sync.schedule.delete")


def _connection_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    from sync.services import sync_schedule_ensure

    transaction.on_commit(lambda: sync_schedule_ensure(instance))


def _connection_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    from sync.services import sync_schedule_remove

    connection_id = instance.pk
    transaction.on_commit(lambda: sync_schedule_remove(connection_id))
