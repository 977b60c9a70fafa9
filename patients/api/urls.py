from django.urls import path

from patients.api import privacy

urlpatterns = [
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
]
