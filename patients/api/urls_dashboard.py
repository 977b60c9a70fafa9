"""The dashboard endpoints (`/api/v1/dashboard/{org}` and its parts)."""

from django.urls import path

from patients.api import dashboard

BASE = "dashboard/<str:org_id>"

urlpatterns = [
    path(BASE, dashboard.DashboardView.as_view(), name="dashboard"),
    path(f"{BASE}/summary", dashboard.DashboardSummaryView.as_view(), name="dashboard-summary"),
    path(f"{BASE}/activity", dashboard.DashboardActivityView.as_view(), name="dashboard-activity"),
    path(f"{BASE}/analytics", dashboard.DashboardAnalyticsView.as_view(), name="dashboard-analytics"),
    path(f"{BASE}/charts", dashboard.DashboardChartsView.as_view(), name="dashboard-charts"),
]
