"""Cached answers about an organization's profiles, keyed by a per-organization version.

Every refresh of an organization's profiles bumps its version and records the next moment one
of its profiles expires (the earliest `valid_until`). A reader takes both in one cache round
trip: past that moment, it recomputes the expired profiles first (which bumps the version);
otherwise an answer cached under the current version is still exactly what the database would
say. Nothing is ever invalidated by hand: old versions simply stop being asked for and expire.

A second number, the data version, moves with every change but a profile's expiry. Answers that
read no profile (the KPIs, charts, activity and the data's as-of time: appointments, invoices,
patients and the settings) are keyed by it, so the expiries that come all day in a busy clinic,
each of which starts a profile version, do not make them be computed again; like every answer,
they are kept for at most ANSWER_CACHE_SECONDS, which bounds how far behind the clock (a visit
counted as attended once it starts) they can be.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta
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
_DATA_VERSION = "profiles:{org}:data_version"


def _cache() -> Any:
    return caches["default"]


def profiles_changed(organization_id: str, *, data: bool = True) -> None:
    """Call after the organization's profiles changed (inside or outside a transaction: it is
    done once the transaction commits, so no reader caches what could still roll back).
    `data=False`: only because some expired (nothing they are computed from changed)."""
    from django.db import transaction

    transaction.on_commit(lambda: _bump(organization_id, data=data))


def profiles_cache_bump(organization_id: str, *, data: bool = True) -> None:
    """Start a new version now (operators and tests that changed rows directly; `data=False`:
    only profiles' expiry times)."""
    _bump(organization_id, data=data)


# How soon the expiry is looked at again after a reader's refresh, in case its transaction
# rolls back (once it commits, the new version records the real next one).
EXPIRY_RECHECK_SECONDS = 5


def _bump(organization_id: str, *, data: bool = True) -> None:
    cache = _cache()
    next_expiry = _next_expiry(organization_id)
    version = _incremented(cache, _VERSION.format(org=organization_id), start=1)
    if data:
        # Started from the profile version: a data version lost from the cache does not start
        # again at numbers whose answers may still be kept.
        _incremented(cache, _DATA_VERSION.format(org=organization_id), start=version)
    cache.set(_EXPIRY.format(org=organization_id), next_expiry, None)


def _expiry_record(organization_id: str, *, pending: bool) -> None:
    """Record the next expiry as this connection sees it; `pending` (its refresh is still to
    commit): EXPIRY_RECHECK_SECONDS from now at the latest."""
    next_expiry = _next_expiry(organization_id)
    if pending:
        soon = timezone.now() + timedelta(seconds=EXPIRY_RECHECK_SECONDS)
        next_expiry = soon if next_expiry is None else min(next_expiry, soon)
    _cache().set(_EXPIRY.format(org=organization_id), next_expiry, None)


def _next_expiry(organization_id: str) -> datetime | None:
    from clinics.rls import tenant_scope

    with tenant_scope(organization_id):
        return (
            PatientProfile.objects.for_org(organization_id)
            .filter(valid_until__isnull=False)
            .order_by("valid_until")
            .values_list("valid_until", flat=True)
            .first()
        )


def _incremented(cache: Any, key: str, *, start: int) -> int:
    if cache.add(key, start, None):
        return start
    try:
        return cache.incr(key)
    except ValueError:  # gone between the two
        cache.set(key, start, None)
        return start


def profiles_state(organization_id: str) -> tuple[int, datetime | None]:
    """(version, next expiry) in one round trip; version 0 when nothing was recorded yet."""
    version, next_expiry, _ = _state(organization_id)
    return version, next_expiry


def _state(organization_id: str) -> tuple[int, datetime | None, int | None]:
    """(version, next expiry, data version) in one round trip."""
    keys = [_VERSION, _EXPIRY, _DATA_VERSION]
    found = _cache().get_many([key.format(org=organization_id) for key in keys])
    version, next_expiry, data_version = (found.get(key.format(org=organization_id)) for key in keys)
    return int(version or 0), next_expiry, None if data_version is None else int(data_version)


def cached_answer(
    organization_id: str,
    name: str,
    params: dict[str, Any],
    compute: Callable[[], Any],
    *,
    refresh_expired: Callable[[], Any],
    seconds: float | None = None,
    data_only: bool = False,
) -> Any:
    """The answer to (name, params) for the organization's profiles as they are now, kept for
    ANSWER_CACHE_SECONDS (or `seconds`, when shorter). `data_only`: the answer reads no
    profile; it is keyed by the data version and needs no expired profile recomputed."""
    version, next_expiry, data_version = _state(organization_id)
    if version == 0:
        # Never recorded (a fresh cache): make the database right first, then start one.
        refresh_expired()
        _bump(organization_id)
        version, next_expiry, data_version = _state(organization_id)
    elif _passed(next_expiry) and not data_only:
        # A profile expired: this reader recomputes it. The refresh starts a version once its
        # transaction commits (at once outside one): one per expiry, however many readers
        # find it. Until then the version as it stands answers the others, and the expiry
        # recorded is the next one this reader sees, so that they do not try too (one that
        # does anyway, finding the refresh's lock held, is told `busy` and answers the same).
        refreshed = refresh_expired()
        before = version
        version, _, data_version = _state(organization_id)
        if not getattr(refreshed, "busy", False) and version == before:  # not yet committed
            pending = bool(getattr(refreshed, "patients", 0))
            _expiry_record(organization_id, pending=pending)
            if pending:
                # Its own answer from what it just recomputed, kept by nobody: the version
                # its commit starts will have it.
                return compute()
    longest = settings.ANSWER_CACHE_SECONDS
    seconds = longest if seconds is None else min(seconds, longest)
    if seconds <= 0:
        return compute()
    # Without a data version (lost from the cache) the profile version stands in: a newer one.
    stamp = f"d{data_version}" if data_only and data_version is not None else f"v{version}"
    digest = hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:32]
    key = f"profiles:{organization_id}:{stamp}:{ANSWER_FORMAT}:{name}:{digest}"
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
