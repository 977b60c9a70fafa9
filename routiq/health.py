"""Readiness (`/health`) and liveness (`/health/live`) probes.

`/health` checks each component the product needs and answers 503 naming the ones that are
down, so a load balancer or operator sees what broke rather than a bare failure.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "postgresql"


def check_cache() -> str:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "ok", timeout=10)
    if cache.get(key) != "ok":
        raise RuntimeError("cache did not return the value it was given")
    cache.delete(key)
    return settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]


def check_channel_layer() -> str:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    async_to_sync(_channel_round_trip)(layer)
    return type(layer).__name__


async def _channel_round_trip(layer) -> None:  # noqa: ANN001 - channels has no layer type
    import asyncio

    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    message = await asyncio.wait_for(layer.receive(channel), timeout=5)
    if message.get("type") != "health.ping":
        raise RuntimeError("channel layer returned another message")


def check_job_queue() -> str:
    from django_q.conf import Conf
    from django_q.status import Stat

    max_age = settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS
    now = timezone.now()
    alive = [
        stat
        for stat in Stat.get_all()
        if stat.status in {Conf.IDLE, Conf.WORKING, Conf.STARTING}
        and (now - stat.timestamp).total_seconds() <= max_age
    ]
    if not alive:
        raise RuntimeError("no worker heartbeat (is `manage.py qcluster` running?)")
    return f"{len(alive)} cluster(s), {sum(len(s.workers) for s in alive)} worker(s)"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "cache": check_cache,
    "channel_layer": check_channel_layer,
    "job_queue": check_job_queue,
}


def run_checks() -> tuple[bool, dict[str, dict[str, object]]]:
    components: dict[str, dict[str, object]] = {}
    healthy = True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            detail = check()
            state = {"status": "up", "detail": detail}
        except Exception as exc:  # any failure of a component is reported, never raised
            healthy = False
            logger.warning("health check %s failed: %s", name, type(exc).__name__)
            state = {"status": "down", "error": _describe(exc)}
        state["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        components[name] = state
    return healthy, components


def _describe(exc: Exception) -> str:
    # The class and first line say what broke without leaking connection strings.
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "@" in first or "password" in first.lower():
        first = ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    healthy, components = run_checks()
    body = {
        "status": "ok" if healthy else "unavailable",
        "timestamp": timezone.now().isoformat().replace("+00:00", "Z"),
        "components": components,
    }
    return JsonResponse(body, status=200 if healthy else 503)


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
