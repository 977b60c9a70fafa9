from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connected after the patients app's receivers (INSTALLED_APPS order), so a run's
        # metrics_updated is published once its profiles are refreshed and answers warmed.
        from patients.changes import records_changed
        from realtime import hooks
        from sync.signals import sync_run_changed

        sync_run_changed.connect(hooks.on_sync_run_changed, dispatch_uid="realtime.sync_run")
        records_changed.connect(hooks.on_records_changed, dispatch_uid="realtime.records")
