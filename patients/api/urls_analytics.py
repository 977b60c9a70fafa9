"""The analytics endpoints (`/api/v1/analytics/{org}/...`)."""

from django.urls import path

from patients.api import kpis

urlpatterns = [
    path("analytics/<str:org_id>/kpis", kpis.ClinicKpisView.as_view(), name="analytics-kpis"),
]
