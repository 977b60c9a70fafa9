from django.urls import path

from clinics.api import audit, views

urlpatterns = [
    path("auth/me", views.MeView.as_view(), name="auth-me"),
    path("organizations/<str:org_id>", views.OrganizationDetailView.as_view(), name="organization-detail"),
    path(
        "organizations/<str:org_id>/audit-events", audit.AuditEventListView.as_view(), name="audit-event-list"
    ),
]
