"""ASGI entry point: WebSockets through Channels; HTTP through Django's WSGI handler on a thread
pool (a2wsgi), except the paths that wait on the event loop (the Server-Sent Events stream),
which go through Django's ASGI handler.

Why not Django's ASGI handler for everything: the views, DRF and most middleware are
synchronous, and under that handler each request crosses between the event loop and threads
about nine times (sync_to_async / async_to_sync, each copying the context), and starts a thread
of its own. On this 2-core machine that was 5.9 ms a request for /health/live against 0.55 ms
through the WSGI handler on a pool, measured side by side in one process (README, Benchmarks).
A WSGI request runs on one pool thread from start to end, as under gunicorn: request_started
and request_finished hand its database connection back to the pool. As under any WSGI server,
a request body is read up to its Content-Length (a chunked body without one reads as empty).
"""

import os
import re
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routiq.settings")
# Django must be set up before anything imports models (consumers do).
django_asgi_app = get_asgi_application()

from a2wsgi import WSGIMiddleware  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

from realtime.routing import websocket_application  # noqa: E402

# Responses that wait on the event loop instead of holding a thread (realtime/stream.py).
ASYNC_PATHS = re.compile(r"^/api/v1/events/[^/]+/stream/?$")


class HttpRouter:
    """HTTP requests to `asgi` when their path matches `async_paths`, else to `wsgi`."""

    def __init__(self, *, wsgi: Any, asgi: Any, async_paths: re.Pattern[str]) -> None:
        self.wsgi, self.asgi, self.async_paths = wsgi, asgi, async_paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        app = self.asgi if self.async_paths.match(scope["path"]) else self.wsgi
        await app(scope, receive, send)


http_application = HttpRouter(
    wsgi=WSGIMiddleware(get_wsgi_application(), workers=settings.WEB_THREADS),
    asgi=django_asgi_app,
    async_paths=ASYNC_PATHS,
)

application = ProtocolTypeRouter(
    {
        "http": http_application,
        # Origin check (ALLOWED_HOSTS and REALTIME_ALLOWED_ORIGINS), session, routes.
        "websocket": websocket_application(),
    }
)
