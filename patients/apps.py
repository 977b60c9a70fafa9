from django.apps import AppConfig


class PatientsConfig(AppConfig):
    name = "patients"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Profiles follow the records: what a sync changed is recomputed when its run ends.
        from django.db.models.signals import post_save, pre_save

        from clinics.models import Organization
        from patients import profiles
        from patients.api import answers
        from patients.changes import records_changed
        from patients.profiles import on_records_changed

        records_changed.connect(on_records_changed, dispatch_uid="patients.profiles")
        # Then the answers its screens ask first are computed ahead (receivers run in order).
        records_changed.connect(answers.on_records_changed, dispatch_uid="patients.answers.warm")
        # And a new organization's, by the job queue once it is committed.
        post_save.connect(
            answers.on_organization_saved, sender=Organization, dispatch_uid="patients.answers.new_org"
        )
        # And every profile again when the settings they depend on change.
        pre_save.connect(
            profiles.on_organization_saving, sender=Organization, dispatch_uid="patients.profiles.settings"
        )
        post_save.connect(
            profiles.on_organization_saved, sender=Organization, dispatch_uid="patients.profiles.settings"
        )
