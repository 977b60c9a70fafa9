from django.urls import path

from realtime.api import views

urlpatterns = [
    path("events/<str:org_id>", views.EventListView.as_view(), name="realtime-events"),
    path("events/<str:org_id>/stream", views.EventStreamView.as_view(), name="realtime-event-stream"),
]
