"""Rate limits per caller and per organization, counted in the shared cache.

The cache is Redis or PostgreSQL, so every web process sees the same counts.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

_PLAIN_ID = re.compile(r"[A-Za-z0-9_]{1,80}")


class CallerRateThrottle(SimpleRateThrottle):
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


class OrganizationRateThrottle(SimpleRateThrottle):
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
