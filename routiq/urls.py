from django.contrib import admin
from django.urls import path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from routiq import health

admin.site.site_header = "Routiq back-office"
admin.site.site_title = "Routiq"

urlpatterns = [
    path("", TemplateView.as_view(template_name="routiq/home.html"), name="home"),
    path("health", health.health, name="health"),
    path("health/live", health.live, name="health-live"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]
