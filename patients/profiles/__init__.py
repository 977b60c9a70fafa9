"""Patient profiles: refreshed set-based in PostgreSQL (`sql.py`), judged by `rules.py`.

- `profiles_refresh(org, patient_ids=...)`: the profiles of some patients (those a sync
  touched), or all of them, in one statement.
- `profiles_refresh_all(org)`: the organization's baseline (median interval, value of a visit)
  and then every profile; the nightly job and "refresh now" call it.
- `profiles_refresh_expired(org)`: the rows past their `valid_until` (a booking passed, a day
  threshold crossed): readers call it first, so what they read is right on the day they read it.

A sync announces what it changed (`patients.changes.records_changed`); `on_records_changed`
collects the patients touched during a run and refreshes them when the run ends (the whole
organization when it is the first import, or when most patients were touched).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from clinics.models import Organization, RetentionSettings
from clinics.rls import tenant_scope
from clinics.tenancy import large_statement_settings, table_statistics_refresh
from patients.changes import RecordsChanged
from patients.models import AppointmentType, Patient, PatientProfile, ProfileBaseline
from patients.profiles.cache import profiles_changed
from patients.profiles.sql import BASELINE_SQL, refresh_sql

logger = logging.getLogger(__name__)

# Above this many patients touched in one run, refreshing them all is cheaper than by id.
FULL_REFRESH_SHARE = 0.5
# The organization's median gap stands in for a patient's own only once it rests on this many
# gaps; until then the configured default does ("21 days until enough data").
ORG_MEDIAN_MIN_GAPS = 20


@dataclass(frozen=True)
class RefreshResult:
    patients: int
    seconds: float
    busy: bool = False  # another refresh of the organization's expired profiles held the lock


def _params(organization: Organization, now: datetime, baseline: ProfileBaseline | None) -> dict[str, Any]:
    retention = organization.retention
    excluded = (
        list(
            AppointmentType.objects.for_org(organization)
            .filter(external_id__in=retention.excluded_appointment_type_ids)
            .values_list("pk", flat=True)
        )
        if retention.excluded_appointment_type_ids
        else []
    )
    return {
        "org": organization.pk,
        "tz": organization.time_zone,
        "now": now,
        "today": now.astimezone(organization.tzinfo).date(),
        "late": timezone.timedelta(hours=retention.late_cancellation_hours),
        "excluded": excluded,
        "visits": retention.expected_interval_visits,
        "default_interval": float(retention.default_interval_days),
        "baseline_interval": baseline.median_interval_days if baseline else None,
        "baseline_value": baseline.average_visit_value if baseline else None,
        "l_soft": retention.lapse_soft_days,
        "l_hard": retention.lapse_hard_days,
        "dormant": retention.dormant_days,
    }


# A full refresh of at least this many patients, outside a transaction, runs in parts on
# PROFILE_REFRESH_WORKERS connections at once: PostgreSQL runs no data-modifying statement in
# parallel by itself, and one statement keeps one core busy (50,000 patients: 20 s on one
# connection, 10 s on two, on this 2-core machine).
PARALLEL_MIN_PATIENTS = 10_000


def profiles_refresh(
    organization: Organization,
    *,
    patient_ids: list[int] | None = None,
    now: datetime | None = None,
    expired_only: bool = False,
) -> RefreshResult:
    """Recompute the profiles of `patient_ids` (all patients when None) as of `now`;
    `expired_only`: because they expired, nothing they are computed from having changed.

    In parts (see PARALLEL_MIN_PATIENTS), each part commits on its own; a patient created
    while they run is left to the refresh its sync asks for."""
    started = time.perf_counter()
    now = now or timezone.now()
    if patient_ids is not None and not patient_ids:
        return RefreshResult(0, 0.0)
    # Its parts commit apart: never inside a caller's transaction.
    may_split = (
        patient_ids is None and settings.PROFILE_REFRESH_WORKERS > 1 and not connection.in_atomic_block
    )
    with tenant_scope(organization):
        baseline = ProfileBaseline.objects.for_org(organization).first()
        params = _params(organization, now, baseline)
        parts = _parts(organization) if may_split else None
        if parts is None:
            count = _refresh_statement(params, patient_ids)
    if parts is not None:
        with ThreadPoolExecutor(len(parts), thread_name_prefix="profiles") as pool:
            counts = list(pool.map(lambda part: _refresh_part(organization, params, part), parts))
        count = sum(counts)
    with tenant_scope(organization):
        if patient_ids is None:
            table_statistics_refresh(PatientProfile)
        profiles_changed(organization.pk, data=not expired_only)
    return RefreshResult(count, time.perf_counter() - started)


def _parts(organization: Organization) -> list[list[int]] | None:
    """The organization's patients in PROFILE_REFRESH_WORKERS runs of ids, when there are
    enough of them for a full refresh to be worth splitting."""
    ids = list(Patient.objects.for_org(organization).order_by("pk").values_list("pk", flat=True))
    if len(ids) < PARALLEL_MIN_PATIENTS:
        return None
    size = -(-len(ids) // settings.PROFILE_REFRESH_WORKERS)
    return [ids[start : start + size] for start in range(0, len(ids), size)]


def _refresh_part(organization: Organization, params: dict[str, Any], patient_ids: list[int]) -> int:
    try:
        with tenant_scope(organization):
            return _refresh_statement(params, patient_ids)
    finally:
        connection.close()  # this thread's: back to the pool


def _refresh_statement(params: dict[str, Any], patient_ids: list[int] | None) -> int:
    """The refresh statement for `patient_ids` (all when None); the rows it wrote. Inside a
    tenant scope."""
    with connection.cursor() as cursor:
        # With fresh statistics a full refresh is costed high enough for PostgreSQL to compile.
        large_statement_settings(cursor)
        cursor.execute(
            refresh_sql(),
            {**params, "all_patients": patient_ids is None, "ids": list(patient_ids or [])},
        )
        return cursor.rowcount


def profile_baseline_refresh(organization: Organization, *, now: datetime | None = None) -> ProfileBaseline:
    now = now or timezone.now()
    with tenant_scope(organization):
        params = _params(organization, now, None)
        with connection.cursor() as cursor:
            large_statement_settings(cursor)
            cursor.execute(BASELINE_SQL, params)
            median, gaps, value = cursor.fetchone()
        enough = (gaps or 0) >= ORG_MEDIAN_MIN_GAPS
        baseline, _ = ProfileBaseline.objects.update_or_create(
            organization=organization,
            defaults={
                "median_interval_days": median if enough else None,
                "interval_gaps": gaps or 0,
                "average_visit_value": value,
                "generated_at": now,
            },
        )
    return baseline


def profiles_refresh_all(organization: Organization, *, now: datetime | None = None) -> RefreshResult:
    started = time.perf_counter()
    profile_baseline_refresh(organization, now=now)
    result = profiles_refresh(organization, now=now)
    return RefreshResult(result.patients, time.perf_counter() - started)


EXPIRY_LOCK = 0x5052  # the advisory lock class of expiry refreshes ("PR"), keyed by organization


def profiles_refresh_expired(
    organization: Organization, *, now: datetime | None = None, wait: bool = True
) -> RefreshResult:
    """Recompute the profiles whose `valid_until` has passed (usually none or a handful).

    One refresh at a time per organization, holding its lock until the transaction ends (a
    caller's, when called inside one). Another caller waits for it and then finds nothing left
    to recompute; or, with `wait=False` (readers of the answer cache), returns at once with
    `busy` set and answers from the data as it is: a request that finds a profile expired must
    not wait for the whole of another request that found it first."""
    now = now or timezone.now()
    with tenant_scope(organization):
        with connection.cursor() as cursor:
            take = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
            cursor.execute(f"SELECT {take}(%s, hashtext(%s))", [EXPIRY_LOCK, organization.pk])
            if not wait and not cursor.fetchone()[0]:
                return RefreshResult(0, 0.0, busy=True)
        expired = list(
            PatientProfile.objects.for_org(organization)
            .filter(valid_until__lte=now)
            .values_list("patient_id", flat=True)
        )
        if not expired:
            return RefreshResult(0, 0.0)
        return profiles_refresh(organization, patient_ids=expired, now=now, expired_only=True)


# --- following the sync ----------------------------------------------------------------------------
_touched: dict[tuple[str, int | None], set[int]] = {}
_touched_lock = threading.Lock()


def on_records_changed(sender: Any, change: RecordsChanged, **kwargs: Any) -> None:
    """`records_changed` receiver: gather the patients a run touched; refresh them when it ends."""
    key = (change.organization_id, change.run_id)
    with _touched_lock:
        touched = _touched.setdefault(key, set())
        touched.update(change.patient_ids)
        if not change.final:
            return
        patients = _touched.pop(key)
    organization = Organization.objects.filter(pk=change.organization_id).first()
    if organization is None:
        return
    if not patients:
        # Nothing to recompute, but the run moved the data's as-of time that answers carry.
        profiles_changed(organization.pk)
        return
    with tenant_scope(organization):
        first_time = not ProfileBaseline.objects.for_org(organization).exists()
        held = PatientProfile.objects.for_org(organization).count()
    if first_time or len(patients) > FULL_REFRESH_SHARE * max(held, 1):
        result = profiles_refresh_all(organization)
    else:
        result = profiles_refresh(organization, patient_ids=sorted(patients))
    logger.info(
        "profiles of %s refreshed after sync %s: %d patients in %.2f s",
        organization.pk,
        change.run_id,
        result.patients,
        result.seconds,
    )


# --- following the organization's settings -------------------------------------------------------
# What a profile says depends on these: when one changes, every profile of the organization is
# recomputed by the job queue once the change is committed (which starts a new version of its
# cached answers), whether it changed through the API, a service or the admin.
PROFILE_SETTINGS_FIELDS = ("retention_settings", "time_zone")
REFRESH_TASK = "patients.tasks.profiles_refresh_task"


def _profile_settings(retention_settings: dict[str, Any] | None, time_zone: str) -> tuple[Any, ...]:
    # As the profiles read them: an empty setting and its default are the same setting.
    return RetentionSettings.from_json(retention_settings).to_json(), time_zone


def on_organization_saving(sender: Any, *, instance: Organization, raw: bool = False, **kwargs: Any) -> None:
    """`pre_save` receiver for Organization: note the settings the row held before."""
    update_fields = set(kwargs.get("update_fields") or PROFILE_SETTINGS_FIELDS)
    if raw or instance._state.adding or not update_fields & set(PROFILE_SETTINGS_FIELDS):
        return
    before = Organization.objects.filter(pk=instance.pk).values_list(*PROFILE_SETTINGS_FIELDS).first()
    instance._profile_settings_before = before and _profile_settings(*before)  # type: ignore[attr-defined]


def on_organization_saved(
    sender: Any, *, instance: Organization, created: bool = False, **kwargs: Any
) -> None:
    """`post_save` receiver for Organization: queue the refresh when those settings changed."""
    before = instance.__dict__.pop("_profile_settings_before", None)
    if created or kwargs.get("raw") or before is None:
        return
    if before == _profile_settings(instance.retention_settings, instance.time_zone):
        return
    from django.db import transaction
    from django_q.tasks import async_task

    organization_id = instance.pk
    transaction.on_commit(
        lambda: async_task(REFRESH_TASK, organization_id, task_name=f"profiles-refresh-{organization_id}")
    )
