from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView, TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from realtime import views as live
from routiq import health
from routiq.api import handlers

admin.site.site_header = "Routiq back-office"
admin.site.site_title = "Routiq"

urlpatterns = [
    path("", TemplateView.as_view(template_name="routiq/home.html"), name="home"),
    path("health", health.health, name="health"),
    path("health/live", health.live, name="health-live"),
    # The staff worklist lives under the profile admin; this is the address people are given.
    path(
        "admin/patients/worklist/",
        RedirectView.as_view(pattern_name="admin:patients_patientprofile_worklist", query_string=True),
    ),
    path("admin/", admin.site.urls),
    # The live dashboard for logged-in staff (the session; numbers over the metrics WebSocket).
    path("live/", live.live_index, name="live-index"),
    path("live/<str:org_id>/", live.live_dashboard, name="live-dashboard"),
    path("api/v1/", include("clinics.api.urls")),
    path("api/v1/", include("patients.api.urls")),
    path("api/v1/", include("sync.api.urls")),
    path("api/v1/", include("realtime.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # Unknown API paths get the JSON envelope, even with DEBUG on.
    re_path(r"^api/", handlers.not_found, name="api-not-found"),
]

handler404 = "routiq.api.handlers.not_found"
handler500 = "routiq.api.handlers.server_error"
