"""The re-engagement endpoints beyond the profile family (patients/api/urls.py has those).

`patient-profiles/export` is not numeric, so `patient-profiles/<int:patient_id>` never takes it.
The patient id of `patient/<id>/details` is matched as text and checked by the view, so a
malformed id gets the same 404 body as a missing one.
"""

from django.urls import path

from patients.api import export, reengagement

BASE = "reengagement/<str:org_id>"

urlpatterns = [
    path(
        f"{BASE}/patient-profiles/export",
        export.PatientProfileExportView.as_view(),
        name="reengagement-profiles-export",
    ),
    path(f"{BASE}/risk-metrics", reengagement.RiskMetricsView.as_view(), name="reengagement-risk-metrics"),
    path(f"{BASE}/prioritized", reengagement.PrioritizedView.as_view(), name="reengagement-prioritized"),
    path(
        f"{BASE}/patients/prioritized",
        reengagement.PrioritizedAliasView.as_view(),
        name="reengagement-patients-prioritized",
    ),
    path(
        f"{BASE}/dashboard-summary",
        reengagement.DashboardSummaryView.as_view(),
        name="reengagement-dashboard-summary",
    ),
    path(f"{BASE}/performance", reengagement.PerformanceView.as_view(), name="reengagement-performance"),
    path(
        f"{BASE}/patient/<str:patient_id>/details",
        reengagement.PatientDetailsView.as_view(),
        name="reengagement-patient-details",
    ),
]
