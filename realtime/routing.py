"""WebSocket routes, and the stack they run in (`websocket_application`, used by routiq.asgi).

The Origin header is checked on every connection, before anything else: a page may open the
stream only from this site (ALLOWED_HOSTS) or from the frontend (CORS_ALLOWED_ORIGINS,
CLERK_AUTHORIZED_PARTIES, and any extra REALTIME_ALLOWED_ORIGINS). Without that check any
site a logged-in staff member visits could open the stream with their session cookie. A
refused origin is turned down in the handshake (HTTP 403; a test client sees the code 4403).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.urls import URLPattern, path

from realtime.consumers import MetricsConsumer
from realtime.protocol import CLOSE_FORBIDDEN

websocket_urlpatterns: list[URLPattern] = [
    path("ws/clinics/<str:org_id>/metrics", MetricsConsumer.as_asgi(), name="ws-metrics"),
]


def allowed_origins() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = ["localhost", "127.0.0.1", "[::1]"]  # as Django's own host check allows
    return [
        *hosts,
        *settings.CORS_ALLOWED_ORIGINS,
        *settings.CLERK_AUTHORIZED_PARTIES,
        *settings.REALTIME_ALLOWED_ORIGINS,
    ]


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Channels' own origin matching, against the lists as they are now."""
    origin = None
    for name, value in scope.get("headers", []):
        if name == b"origin":
            try:
                origin = urlparse(value.decode("latin1"))
            except (UnicodeDecodeError, ValueError):
                origin = None
    return OriginValidator(None, allowed_origins()).valid_origin(origin)


async def _refuse(receive: Any, send: Any) -> None:
    """Turn the handshake down (plain ASGI: no consumer, no channel-layer channel for it)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": CLOSE_FORBIDDEN})


class OriginCheck:
    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await _refuse(receive, send)
        return await self.application(scope, receive, send)


def websocket_application() -> Any:
    return OriginCheck(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
