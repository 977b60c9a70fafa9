from django.urls import include, path

from patients.api import privacy, profiles

PROFILES = "reengagement/<str:org_id>/patient-profiles"

urlpatterns = [
    path(PROFILES, profiles.PatientProfileListView.as_view(), name="reengagement-patient-profiles"),
    path(
        f"{PROFILES}/summary",
        profiles.PatientProfileSummaryView.as_view(),
        name="reengagement-profiles-summary",
    ),
    path(f"{PROFILES}/debug", profiles.PatientProfileDebugView.as_view(), name="reengagement-profiles-debug"),
    path(f"{PROFILES}/batch", profiles.PatientProfileBatchView.as_view(), name="reengagement-profiles-batch"),
    path(
        f"{PROFILES}/<int:patient_id>",
        profiles.PatientProfileDetailView.as_view(),
        name="reengagement-patient-profile",
    ),
    path(
        "privacy/<str:org_id>/patients/<int:patient_id>/export",
        privacy.PatientExportView.as_view(),
        name="privacy-patient-export",
    ),
    path(
        "privacy/<str:org_id>/patients/<int:patient_id>/anonymise",
        privacy.PatientAnonymiseView.as_view(),
        name="privacy-patient-anonymise",
    ),
    path("privacy/<str:org_id>/purge", privacy.RetentionPurgeView.as_view(), name="privacy-retention-purge"),
    path("", include("patients.api.urls_reengagement")),
    path("", include("patients.api.urls_analytics")),
    path("", include("patients.api.urls_dashboard")),
]
