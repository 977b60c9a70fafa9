from django.urls import path

from sync.api import views

urlpatterns = [
    path("cliniko/sync/<str:org_id>", views.ClinikoSyncTriggerView.as_view(), name="cliniko-sync"),
    path("cliniko/status/<str:org_id>", views.ClinikoStatusView.as_view(), name="cliniko-status"),
    path(
        "cliniko/patients/<str:org_id>/stats",
        views.ClinikoPatientStatsView.as_view(),
        name="cliniko-patient-stats",
    ),
    path("sync/<str:org_id>", views.SyncTriggerView.as_view(), name="sync-trigger"),
    path("sync/<str:org_id>/runs", views.SyncRunListView.as_view(), name="sync-run-list"),
    path("sync/<str:org_id>/runs/<int:run_id>", views.SyncRunDetailView.as_view(), name="sync-run-detail"),
]
