"""Analytics answers as the API sends them, computed once per data version and cached.

An answer is rendered to JSON when computed and cached as bytes under the organization's
version (patients.profiles.cache); a request only puts the envelope's own fields (success,
timestamp, organization) in front of it. The same builders warm the cache after a sync, so the
first dashboard load after new data does not pay for computing it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from clinics.models import Organization
from clinics.rls import tenant_scope
from patients import selectors
from patients.api.profile_data import ProfileSummarySerializer, profiles_data
from patients.profiles import profiles_refresh_expired
from patients.profiles.cache import cached_answer
from routiq.api import envelope
from routiq.api.pagination import DEFAULT_LIMIT

logger = logging.getLogger(__name__)

# (key, data, extra fields): what an answer's compute function returns.
Computed = tuple[str, Any, dict[str, Any]]


def answer_rendered(
    organization: Organization,
    name: str,
    params: dict[str, Any],
    compute: Callable[[], Computed],
    *,
    data_only: bool = False,
) -> bytes:
    """The answer to (name, params) as JSON bytes, with `data_as_of`; from the cache when the
    organization's data has not changed since it was computed (`data_only`: see
    answer_cached)."""

    def build() -> bytes:
        key, data, extra = compute()
        return JSONRenderer().render({key: data, **extra, "data_as_of": data_as_of(organization)})

    return answer_cached(organization, name, params, build, data_only=data_only)


def answer_cached(
    organization: Organization,
    name: str,
    params: dict[str, Any],
    compute: Callable[[], Any],
    *,
    seconds: float | None = None,
    data_only: bool = False,
) -> Any:
    """cached_answer for the organization, its expired profiles recomputed first by a reader
    that does not wait for another reader's refresh. `data_only`: an answer that reads no
    profile (appointments, invoices, patients, settings), which a profile's expiry leaves
    as it is."""

    def refresh() -> Any:
        return profiles_refresh_expired(organization, wait=False)

    return cached_answer(
        organization.pk, name, params, compute, refresh_expired=refresh, seconds=seconds, data_only=data_only
    )


def data_as_of(organization: Organization) -> Any:
    """selectors.organization_data_as_of, once per version: it moves only with a finished sync
    or a load, which start one, and without a connection it reads every patient."""

    def read() -> tuple[Any]:
        return (selectors.organization_data_as_of(organization),)  # wrapped: None is an answer too

    return answer_cached(organization, "data_as_of", {}, read, data_only=True)[0]


def answer_response(organization: Organization, rendered: bytes) -> HttpResponse:
    head = json.dumps(
        {"success": True, "timestamp": envelope.utc_timestamp(), "organization_id": organization.pk},
        separators=(",", ":"),
    )
    return HttpResponse(head[:-1].encode() + b"," + rendered[1:], content_type="application/json")


def profile_rows(organization: Organization, profiles: Any) -> list[dict[str, Any]]:
    return profiles_data(profiles, now=timezone.now(), tz=organization.tzinfo, currency=organization.currency)


def profile_page(
    organization: Organization,
    *,
    filters: selectors.ProfileFilters,
    ordering: str = "priority",
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> bytes:
    def compute() -> Computed:
        profiles = selectors.patient_profile_list(organization, filters=filters, ordering=ordering)
        # Counted once per version for every page and ordering of the same filters; by the data
        # version when only a search narrows the list: it matches the patients' own fields, and
        # an expiry recomputes profiles but adds or removes none.
        total = answer_cached(
            organization,
            "list.total",
            {"filters": filters},
            profiles.count,
            data_only=filters == selectors.ProfileFilters(search=filters.search),
        )
        rows = list(profiles[offset : offset + limit]) if offset < total else []
        return (
            "patient_profiles",
            profile_rows(organization, rows),
            {"count": len(rows), "total": total, "limit": limit, "offset": offset},
        )

    params = {"filters": filters, "ordering": ordering, "limit": limit, "offset": offset}
    return answer_rendered(organization, "list", params, compute)


def profile_summary(organization: Organization) -> bytes:
    def compute() -> Computed:
        summary = selectors.patient_profile_summary(organization)
        summary = {
            **summary,
            "value_at_risk": float(summary["value_at_risk"]),
            "estimated_lifetime_value": float(summary["estimated_lifetime_value"]),
            "currency": organization.currency,
        }
        return "summary", dict(ProfileSummarySerializer(summary).data), {}

    return answer_rendered(organization, "summary", {"currency": organization.currency}, compute)


def _screens_first() -> dict[str, Callable[[Organization], bytes]]:
    """What a clinic's screens ask first (the endpoints' defaults), computed ahead after its
    data changes. The views' modules import this one, so they are imported here, when asked."""
    from patients.api import dashboard, kpis, reengagement

    return {
        "profiles_page": lambda org: profile_page(org, filters=selectors.ProfileFilters()),
        "profiles_summary": profile_summary,
        "reengagement_dashboard_summary": reengagement.dashboard_summary_answer,
        "reengagement_performance": reengagement.performance_answer,
        "analytics_kpis": kpis.kpis_answer,
        "dashboard_summary": dashboard.dashboard_summary_answer,  # and the 30-day analytics in it
        "dashboard_charts": dashboard.dashboard_charts_answer,
    }


# Added to the defaults, or replacing one of them by name (later screens, tests).
WARMERS: dict[str, Callable[[Organization], bytes]] = {}


def answers_warm(organization: Organization) -> list[str]:
    """Compute the first answers of the organization's screens into the cache; the names warmed.
    A failure is logged, never raised: warming only saves a later request the work."""
    warmed = []
    for name, warm in {**_screens_first(), **WARMERS}.items():
        try:
            # Each in the organization's scope: under row-level security, outside one, every table
            # looks empty, and an empty answer would be cached as the truth of this version.
            with tenant_scope(organization):
                warm(organization)
        except Exception:
            logger.exception("warming %s for %s failed", name, organization.pk)
        else:
            warmed.append(name)
    return warmed


def on_records_changed(sender: Any, change: Any, **kwargs: Any) -> None:
    """`records_changed` receiver, connected after the profile refresh: once a sync run ended
    and its profiles were recomputed, compute the answers its clinic will ask for first."""
    if not change.final:
        return
    organization = Organization.objects.filter(pk=change.organization_id).first()
    if organization is not None:
        answers_warm(organization)


def on_organization_saved(
    sender: Any, *, instance: Organization, created: bool = False, **kwargs: Any
) -> None:
    """`post_save` receiver: a new organization's answers are computed ahead by the job queue
    once it is committed, so its first dashboard is served from the cache."""
    if not created or kwargs.get("raw"):
        return
    from django_q.tasks import async_task

    from patients.tasks import WARM_TASK

    organization_id = instance.pk
    transaction.on_commit(
        lambda: async_task(WARM_TASK, organization_id, task_name=f"answers-warm-{organization_id}")
    )
