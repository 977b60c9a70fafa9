from django.urls import path

from clinics.api import views

urlpatterns = [
    path("auth/me", views.MeView.as_view(), name="auth-me"),
    path("organizations/<str:org_id>", views.OrganizationDetailView.as_view(), name="organization-detail"),
]
