from django.apps import AppConfig


class ClinicsConfig(AppConfig):
    name = "clinics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from clinics.auth import schema  # noqa: F401 - registers the OpenAPI auth extension
        from clinics.models import Organization
        from clinics.selectors import on_organization_changed

        # A request's memoised organization is forgotten when it changes (clinics.selectors).
        for signal in (post_save, post_delete):
            signal.connect(on_organization_changed, sender=Organization, dispatch_uid="organization_memo")
