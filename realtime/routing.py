"""WebSocket routes. The metrics stream arrives with the live-updates work."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []
