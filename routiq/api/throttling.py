"""Rate limits per caller and per organization, counted in the shared cache.

The cache is Redis or PostgreSQL, so every web process sees the same counts. Each limit is a
fixed window (a minute, an hour) counted with one atomic increment: with Redis one pipelined
round trip (INCR, EXPIRE NX), where DRF's own throttle reads and rewrites a list of timestamps
(two round trips, and a third of a short request's time). A window lets at most twice the rate
through across its boundary; Retry-After is the time to the window's end.
"""

from __future__ import annotations

import math
import re
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

_PLAIN_ID = re.compile(r"[A-Za-z0-9_]{1,80}")


def _increment(key: str, *, ttl: int) -> int:
    """Add one to the counter at `key` (created with `ttl` seconds to live); its new value."""
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        full_key = cache.make_and_validate_key(key)
        client = cache._cache.get_client(full_key, write=True)
        pipe = client.pipeline(transaction=False)
        pipe.incr(full_key)
        pipe.expire(full_key, ttl, nx=True)
        count, _ = pipe.execute()
        return int(count)
    # The database cache: a window's counter exists for all but its first request, so try the
    # increment first (an add of an existing key costs a failed INSERT and its rollback).
    try:
        return cache.incr(key)
    except ValueError:  # the window's first request, or its counter just expired
        if cache.add(key, 1, ttl):
            return 1
        return cache.incr(key)  # another request created it meanwhile


class WindowRateThrottle(SimpleRateThrottle):
    """DRF's rate parsing and keys, counted in fixed windows (see the module docstring)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_end = (window + 1) * self.duration
        count = _increment(f"{self.key}:{window}", ttl=int(self.duration) + 1)
        return count <= self.num_requests

    def wait(self) -> float:
        return max(1, math.ceil(self.window_end - self.now))


class CallerRateThrottle(WindowRateThrottle):
    """Per user, per API key, or per client address when anonymous."""

    scope = "caller"

    def get_cache_key(self, request: Request, view: Any) -> str:
        principal = request.auth
        if getattr(principal, "kind", None) == "api_key":
            ident = f"key:{principal.api_key.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class OrganizationRateThrottle(WindowRateThrottle):
    """All callers of one organization together; only on organization-scoped views."""

    scope = "organization"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        org_id = view.kwargs.get("org_id") if hasattr(view, "kwargs") else None
        # A malformed id names no organization (the view answers 404) and must not reach the
        # cache key: a NUL byte there is a 500 from the database cache.
        if not org_id or not _PLAIN_ID.fullmatch(org_id):
            return None
        return self.cache_format % {"scope": self.scope, "ident": org_id}


class SyncTriggerThrottle(OrganizationRateThrottle):
    """Sync triggers spend the clinic's PMS budget: a much tighter limit."""

    scope = "sync_trigger"


class ExportThrottle(OrganizationRateThrottle):
    """Exports read a whole organization's list: a tight limit per organization."""

    scope = "export"
