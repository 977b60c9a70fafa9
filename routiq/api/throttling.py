"""Rate limits per caller and per organization, counted in the shared cache.

The cache is Redis or PostgreSQL, so every web process sees the same counts.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


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
        if not org_id:
            return None
        return self.cache_format % {"scope": self.scope, "ident": org_id}


class SyncTriggerThrottle(OrganizationRateThrottle):
    """Sync triggers spend the clinic's PMS budget: a much tighter limit."""

    scope = "sync_trigger"
