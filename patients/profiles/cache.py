"""Cached answers about an organization's profiles, keyed by a per-organization version.

Every refresh of an organization's profiles bumps its version and records the next moment one
of its profiles expires (the earliest `valid_until`). A reader takes both in one cache round
trip: past that moment, it recomputes the expired profiles first (which bumps the version);
otherwise an answer cached under the current version is still exactly what the database would
say. Nothing is ever invalidated by hand: old versions simply stop being asked for and expire.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone

from patients.models import PatientProfile

# Part of every answer's key: change it whenever what is cached changes shape.
ANSWER_FORMAT = "json1"
_VERSION = "profiles:{org}:version"
_EXPIRY = "profiles:{org}:next_expiry"


def _cache() -> Any:
    return caches["default"]


def profiles_changed(organization_id: str) -> None:
    """Call after the organization's profiles changed (inside or outside a transaction: it is
    done once the transaction commits, so no reader caches what could still roll back)."""
    from django.db import transaction

    transaction.on_commit(lambda: _bump(organization_id))


def profiles_cache_bump(organization_id: str) -> None:
    """Start a new version now (operators and tests that changed rows directly)."""
    _bump(organization_id)


def _bump(organization_id: str) -> None:
    from clinics.rls import tenant_scope

    cache = _cache()
    with tenant_scope(organization_id):
        next_expiry = (
            PatientProfile.objects.for_org(organization_id)
            .filter(valid_until__isnull=False)
            .order_by("valid_until")
            .values_list("valid_until", flat=True)
            .first()
        )
    version_key = _VERSION.format(org=organization_id)
    if not cache.add(version_key, 1, None):
        try:
            cache.incr(version_key)
        except ValueError:
            cache.set(version_key, 1, None)
    cache.set(_EXPIRY.format(org=organization_id), next_expiry, None)


def profiles_state(organization_id: str) -> tuple[int, datetime | None]:
    """(version, next expiry) in one round trip; version 0 when nothing was recorded yet."""
    keys = [_VERSION.format(org=organization_id), _EXPIRY.format(org=organization_id)]
    found = _cache().get_many(keys)
    return int(found.get(keys[0]) or 0), found.get(keys[1])


def cached_answer(
    organization_id: str,
    name: str,
    params: dict[str, Any],
    compute: Callable[[], Any],
    *,
    refresh_expired: Callable[[], Any],
    seconds: float | None = None,
) -> Any:
    """The answer to (name, params) for the organization's profiles as they are now, kept for
    ANSWER_CACHE_SECONDS (or `seconds`, when shorter)."""
    version, next_expiry = profiles_state(organization_id)
    if version == 0 or _passed(next_expiry):
        # Never recorded (a fresh cache) or a profile expired: make the database right first.
        # Only a refresh that recomputed something starts a version (or ten readers arriving
        # together would start ten, each making every answer be computed again); a reader
        # that finds another one refreshing answers from the version as it stands, which that
        # refresh moves once it commits.
        refreshed = refresh_expired()
        if not getattr(refreshed, "busy", False):
            version, next_expiry = profiles_state(organization_id)
            if version == 0 or getattr(refreshed, "patients", 1) or _passed(next_expiry):
                _bump(organization_id)
                version, _ = profiles_state(organization_id)
    longest = settings.ANSWER_CACHE_SECONDS
    seconds = longest if seconds is None else min(seconds, longest)
    if seconds <= 0:
        return compute()
    digest = hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:32]
    key = f"profiles:{organization_id}:v{version}:{ANSWER_FORMAT}:{name}:{digest}"
    cache = _cache()
    answer = cache.get(key)
    if answer is None:
        answer = _computed_once(cache, key, compute, seconds)
    return answer


def _passed(moment: datetime | None) -> bool:
    return moment is not None and moment <= timezone.now()


# How long a reader waits for the same answer being computed elsewhere before computing it too.
COMPUTE_WAIT_SECONDS = 5.0


def _computed_once(cache: Any, key: str, compute: Callable[[], Any], seconds: float) -> Any:
    """compute() and cache it; or, while another request is computing the same answer (a new
    version: every screen of the clinic asks again at once), wait for theirs instead of
    computing it alongside on the same cores. With Redis only: the database cache's entries
    are written inside the request's transaction, invisible to the others until it commits."""

    def computed_here() -> Any:
        answer = compute()
        cache.set(key, answer, seconds)
        return answer

    if not isinstance(cache, RedisCache):
        return computed_here()
    claim = f"{key}:computing"
    if cache.add(claim, 1, int(COMPUTE_WAIT_SECONDS) + 1):
        try:
            return computed_here()
        finally:
            cache.delete(claim)
    deadline = time.monotonic() + COMPUTE_WAIT_SECONDS
    pause = 0.005
    while time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
        answer = cache.get(key)
        if answer is not None:
            return answer
        if cache.get(claim) is None:  # the other one failed: compute it here
            break
    return computed_here()
