"""Reads behind the re-engagement worklist: who is at risk, whom to contact first, how the
clinic is doing at bringing patients back, one patient's whole picture, and the ids an export
streams. Everything reads the materialised profiles (`patients.profiles`) except the
performance figures, which are counted from appointments as of the moments they happened.

Definitions follow ../shared/reference/retention-metrics.md; thresholds are the organization's.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.utils import timezone

from clinics.models import Organization
from patients import selectors
from patients.models import (
    Appointment,
    AppointmentType,
    ChurnRisk,
    EngagementLevel,
    Invoice,
    InvoiceStatus,
    LifecycleStage,
    PatientProfile,
)
from patients.profiles import rules

# Every ordering ends with the patient id, so paging never repeats or skips a patient.
RISK_ORDERING = selectors.PROFILE_ORDERINGS["risk"]
PRIORITY_ORDERING = ("action_priority", "-value_at_risk", "-churn_risk_score", "patient_id")
ACTION_PRIORITIES = range(1, rules.NO_ACTION_PRIORITY + 1)
NO_ACTION = "none"
DETAIL_APPOINTMENTS = 20
# Outreach is recorded by a later issue; until then its figures are zero and null, never made up.
OUTREACH_UNTRACKED: dict[str, Any] = {
    "outreach_tracked": False,
    "outreach_attempts": 0,
    "successful_outreach": 0,
    "outreach_success_rate": None,
    "patients_contacted": 0,
}


# --- risk and the worklist ---------------------------------------------------------------------
def _score_range(band: str) -> tuple[int, int]:
    """The scores of a churn-risk band, [low, high)."""
    floors = {name: floor for floor, name in rules.BANDS} | {"low": 0}
    low = floors[band]
    return low, min((floor for floor in floors.values() if floor > low), default=101)


def _in_band(band: str) -> Q:
    # The band is written from the score by the same statement, so the score range says
    # nothing new; it is there so the (organization, score) index can serve the filter.
    low, high = _score_range(band)
    return Q(churn_risk=band, churn_risk_score__gte=low, churn_risk_score__lt=high)


def risk_metrics_list(
    organization: Organization, *, risk_level: str | None = None
) -> QuerySet[PatientProfile]:
    """Profiles by churn-risk score, highest first (then value at risk, then patient id)."""
    profiles = selectors.patient_profiles(organization)
    if risk_level is not None:
        profiles = profiles.filter(_in_band(risk_level))
    return profiles.order_by(*RISK_ORDERING)


def risk_metrics_page(
    organization: Organization, *, risk_level: str | None = None, offset: int, limit: int
) -> list[PatientProfile]:
    """One page of `risk_metrics_list` (an index range read: profile_org_risk_page)."""
    return list(risk_metrics_list(organization, risk_level=risk_level)[offset : offset + limit])


def risk_band_counts(organization: Organization) -> dict[str, int]:
    """How many of the organization's patients are in each churn-risk band, and in all."""
    counts = PatientProfile.objects.for_org(organization).aggregate(
        total=Count("pk"), **{band: Count("pk", filter=Q(churn_risk=band)) for band in ChurnRisk.values}
    )
    return {band: counts[band] for band in ChurnRisk.values} | {"total": counts["total"]}


def prioritized_list(
    organization: Organization,
    *,
    risk_level: str | None = None,
    engagement_level: str | None = None,
    action_priority: int | None = None,
) -> QuerySet[PatientProfile]:
    """The worklist: most urgent first, then most value at risk, then highest risk score."""
    profiles = selectors.patient_profiles(organization).select_related("primary_practitioner")
    if risk_level is not None:
        profiles = profiles.filter(_in_band(risk_level))
    if engagement_level is not None:
        profiles = profiles.filter(engagement_level=engagement_level)
    if action_priority is not None:
        profiles = profiles.filter(action_priority=action_priority)
    return profiles.order_by(*PRIORITY_ORDERING)


def reengagement_dashboard_summary(
    organization: Organization, *, now: datetime | None = None
) -> dict[str, Any]:
    """The overview in one aggregate: patients by engagement, risk band and stage, how many
    need contact at each priority, and the value at risk (outreach: untracked, see above)."""
    now = now or timezone.now()
    contact = ~Q(recommended_action=NO_ACTION)
    counts = PatientProfile.objects.for_org(organization).aggregate(
        total_patients=Count("pk"),
        **{level: Count("pk", filter=Q(engagement_level=level)) for level in EngagementLevel.values},
        **{f"{band}_risk": Count("pk", filter=Q(churn_risk=band)) for band in ChurnRisk.values},
        **{f"stage_{stage}": Count("pk", filter=Q(lifecycle_stage=stage)) for stage in LifecycleStage.values},
        **{f"priority_{p}": Count("pk", filter=contact & Q(action_priority=p)) for p in ACTION_PRIORITIES},
        needing_contact=Count("pk", filter=contact),
        with_upcoming=Count("pk", filter=Q(next_appointment_at__gt=now)),
        # Named apart from the fields they sum: an aggregate may not shadow a column it reads.
        sum_at_risk=Sum("value_at_risk"),
        sum_at_risk_needing_contact=Sum("value_at_risk", filter=contact),
        sum_lifetime_value=Sum("estimated_lifetime_value"),
        generated_at=Max("generated_at"),
    )
    stages = {stage: counts.pop(f"stage_{stage}") for stage in LifecycleStage.values}
    priorities = {str(p): counts.pop(f"priority_{p}") for p in ACTION_PRIORITIES}
    money = {
        "value_at_risk": "sum_at_risk",
        "value_at_risk_needing_contact": "sum_at_risk_needing_contact",
        "estimated_lifetime_value": "sum_lifetime_value",
    }
    return {
        **{name: value for name, value in counts.items() if not name.startswith("sum_")},
        **{name: counts[total] or Decimal("0") for name, total in money.items()},
        "by_lifecycle_stage": stages,
        "needing_contact_by_priority": priorities,
        **OUTREACH_UNTRACKED,
        "last_outreach_at": None,
    }


# --- performance: what happened in a period, as of when it happened -----------------------------
TIMEFRAMES = ("last_7_days", "last_30_days", "last_90_days", "last_6_months")
_TIMEFRAME_DAYS = {"last_7_days": 7, "last_30_days": 30, "last_90_days": 90}


@dataclass(frozen=True)
class Period:
    timeframe: str
    start: datetime  # the clinic's midnight that begins the first day
    end: datetime  # now
    first_day: date
    last_day: date


def _months_before(day: date, months: int) -> date:
    month_index = day.year * 12 + day.month - 1 - months
    year, month = divmod(month_index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def performance_period(organization: Organization, *, timeframe: str, now: datetime | None = None) -> Period:
    """The clinic's calendar days that make up `timeframe`, today (so far) the last of them."""
    now = now or timezone.now()
    tz = organization.tzinfo
    today = now.astimezone(tz).date()
    if timeframe == "last_6_months":
        first = _months_before(today, 6) + timedelta(days=1)
    else:
        first = today - timedelta(days=_TIMEFRAME_DAYS[timeframe] - 1)
    return Period(timeframe, datetime.combine(first, time.min, tzinfo=tz), now, first, today)


def _excluded_type_ids(organization: Organization) -> list[int]:
    wanted = organization.retention.excluded_appointment_type_ids
    if not wanted:
        return []
    types = AppointmentType.objects.for_org(organization).filter(external_id__in=wanted)
    return list(types.values_list("pk", flat=True))


def _counted(alias: str) -> str:
    """A current appointment of a patient, of a type that counts."""
    return (
        f"{alias}.organization_id = %(org)s AND {alias}.patient_id IS NOT NULL"
        f" AND {alias}.archived_at IS NULL AND {alias}.deleted_at IS NULL"
        f" AND ({alias}.appointment_type_id IS NULL"
        f" OR NOT {alias}.appointment_type_id = ANY(%(excluded)s::bigint[]))"
    )


def _attended(alias: str) -> str:
    return (
        f"{alias}.cancelled_at IS NULL AND NOT {alias}.did_not_arrive"
        f" AND ({alias}.patient_arrived OR {alias}.starts_at <= %(now)s)"
    )


def _held(patient: str, moment: str, created: str) -> str:
    """The patient holds a future appointment at `moment` (created by then, starting later,
    not cancelled by then); `created` is the comparison for "by then"."""
    return f"""SELECT 1 FROM patients_appointment h
        WHERE {_counted("h")} AND h.patient_id = {patient} AND h.starts_at > {moment}
          AND coalesce(h.pms_created_at, '-infinity') {created} {moment}
          AND (h.cancelled_at IS NULL OR h.cancelled_at > {moment})"""


def _days(later: str, earlier: str) -> str:
    return f"(({later} AT TIME ZONE %(tz)s)::date - ({earlier} AT TIME ZONE %(tz)s)::date)"


def _lapsing(later: str, earlier: str, usual: str) -> str:
    """The lifecycle rule for "lapsing or beyond": L_soft days, or over 3 usual intervals."""
    days = _days(later, earlier)
    return f"({days} >= %(l_soft)s OR {days} > 3 * {usual})"


@cache
def _performance_sql() -> str:
    # Bookings made: appointments created in the period. An appointment starts after it is
    # booked, so the start bound adds nothing but lets the (organization, starts_at) index serve.
    # Reactivations: a booking made in the period (attended or still pending) by a patient who,
    # just before making it, was lapsing or beyond (last attended visit L_soft days or 3 usual
    # intervals back; the usual interval is today's E(p)) and held no other booking. One count
    # per lapse. A booking follows a lapse only if the patient's previous kept booking in the
    # period was itself made a lapse earlier (otherwise that one was attended since or is still
    # held), which leaves one lookup per patient rather than one per booking.
    # Lapsed: patients whose L_hard-th day since their last attended visit began in the period,
    # with no visit in between and no booking held at that midnight.
    return f"""
WITH made AS MATERIALIZED (
    SELECT a.id, a.patient_id, a.pms_created_at AS made_at, a.cancelled_at IS NOT NULL AS cancelled,
           a.cancelled_at IS NULL AND NOT a.did_not_arrive AS kept_or_pending
    FROM patients_appointment a
    WHERE {_counted("a")} AND a.starts_at >= %(start)s
      AND a.pms_created_at >= %(start)s AND a.pms_created_at <= %(now)s
),
kept AS (
    SELECT m.id, m.patient_id, m.made_at,
           lag(m.made_at) OVER (PARTITION BY m.patient_id ORDER BY m.made_at, m.id) AS previous_made_at
    FROM made m WHERE m.kept_or_pending
),
candidates AS (
    SELECT k.patient_id, k.made_at, p.expected_interval_days AS usual
    FROM kept k JOIN patient_conversation_profile p
         ON p.patient_id = k.patient_id AND p.organization_id = %(org)s
    WHERE k.previous_made_at IS NULL
       OR {_lapsing("k.made_at", "k.previous_made_at", "p.expected_interval_days")}
),
reactivations AS (
    SELECT DISTINCT ON (c.patient_id, last.at) c.patient_id, {_days("c.made_at", "last.at")} AS days
    FROM candidates c
    CROSS JOIN LATERAL (
        SELECT v.starts_at AS at FROM patients_appointment v
        WHERE {_counted("v")} AND v.patient_id = c.patient_id AND v.starts_at < c.made_at AND {_attended("v")}
        ORDER BY v.starts_at DESC LIMIT 1
    ) last
    WHERE {_lapsing("c.made_at", "last.at", "c.usual")}
      AND NOT EXISTS ({_held("c.patient_id", "c.made_at", "<")})
    ORDER BY c.patient_id, last.at, c.made_at
),
visits AS (
    SELECT v.patient_id, v.starts_at,
           (((v.starts_at AT TIME ZONE %(tz)s)::date + %(l_hard)s)::timestamp AT TIME ZONE %(tz)s)
               AS crossing,
           lead(v.starts_at) OVER (PARTITION BY v.patient_id ORDER BY v.starts_at, v.id) AS next_visit_at
    FROM patients_appointment v
    WHERE {_counted("v")} AND {_attended("v")}
      AND v.starts_at >= %(lapse_from)s AND v.starts_at < %(lapse_to)s
),
lapses AS (
    SELECT DISTINCT x.patient_id FROM visits x
    WHERE x.crossing >= %(start)s AND x.crossing <= %(now)s
      AND (x.next_visit_at IS NULL OR x.next_visit_at >= x.crossing)
      AND NOT EXISTS (
          SELECT 1 FROM patients_appointment w
          WHERE {_counted("w")} AND w.patient_id = x.patient_id
            AND w.starts_at > x.starts_at AND w.starts_at < x.crossing AND {_attended("w")})
      AND NOT EXISTS ({_held("x.patient_id", "x.crossing", "<=")})
)
SELECT
    (SELECT count(*) FROM made),
    (SELECT count(DISTINCT patient_id) FROM made),
    (SELECT count(*) FROM made WHERE cancelled),
    (SELECT count(*) FROM reactivations),
    (SELECT count(DISTINCT patient_id) FROM reactivations),
    (SELECT count(*) FROM reactivations WHERE days < %(l_hard)s),
    (SELECT count(*) FROM reactivations WHERE days >= %(l_hard)s AND days < %(dormant)s),
    (SELECT count(*) FROM reactivations WHERE days >= %(dormant)s),
    (SELECT count(*) FROM lapses)
"""


_PERFORMANCE_FIGURES = (
    "bookings_made",
    "patients_booking",
    "bookings_made_since_cancelled",
    "reactivations",
    "reactivated_patients",
    "reactivated_from_lapsing",
    "reactivated_from_lapsed",
    "reactivated_from_dormant",
    "patients_lapsed",
)


def reengagement_performance(
    organization: Organization, *, timeframe: str, now: datetime | None = None
) -> dict[str, Any]:
    """What the appointments say about the period (one statement), and outreach figures that
    are zero and null until outreach is recorded: `outreach_tracked` says so."""
    period = performance_period(organization, timeframe=timeframe, now=now)
    retention = organization.retention
    params = {
        "org": organization.pk,
        "tz": organization.time_zone,
        "now": period.end,
        "start": period.start,
        "excluded": _excluded_type_ids(organization),
        "l_soft": retention.lapse_soft_days,
        "l_hard": retention.lapse_hard_days,
        "dormant": retention.dormant_days,
        # Visits whose L_hard-th day can fall in the period (a day either side for the clock).
        "lapse_from": period.start - timedelta(days=retention.lapse_hard_days + 1),
        "lapse_to": period.end - timedelta(days=retention.lapse_hard_days - 2),
    }
    with connection.cursor() as cursor:
        cursor.execute(_performance_sql(), params)
        figures = dict(zip(_PERFORMANCE_FIGURES, cursor.fetchone(), strict=True))
    return {
        "period": period,
        **figures,
        **OUTREACH_UNTRACKED,
        "outreach_conversions": None,
    }


# --- one patient -------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatientDetails:
    profile: PatientProfile
    recent_appointments: list[Appointment]
    upcoming_appointments: list[Appointment]
    invoices: dict[str, Any]


def patient_details_get(
    organization: Organization,
    *,
    patient_id: int,
    now: datetime | None = None,
    limit: int = DETAIL_APPOINTMENTS,
) -> PatientDetails:
    """One patient's profile, their last `limit` appointments (any outcome) and up to `limit`
    booked ones, and their invoice totals. `PatientProfile.DoesNotExist` for a patient
    missing or another organization's alike."""
    now = now or timezone.now()
    profile = selectors.patient_profile_get(organization, patient_id=patient_id)
    late = organization.retention.late_cancellation_hours
    appointments = (
        Appointment.objects.for_org(organization)
        .current()
        .filter(patient_id=patient_id)
        .with_outcome(now=now, late_cancellation_hours=late)
        .select_related("practitioner", "appointment_type", "location")
    )
    recent = appointments.filter(starts_at__lte=now).order_by("-starts_at", "-pk")[:limit]
    upcoming = appointments.filter(starts_at__gt=now, cancelled_at__isnull=True).order_by("starts_at", "pk")
    return PatientDetails(
        profile, list(recent), list(upcoming[:limit]), _invoice_totals(organization, patient_id)
    )


def _invoice_totals(organization: Organization, patient_id: int) -> dict[str, Any]:
    invoices = Invoice.objects.for_org(organization).filter(
        patient_id=patient_id, archived_at__isnull=True, deleted_at__isnull=True
    )
    is_open = Q(status=InvoiceStatus.OPEN)
    # Aggregates are named apart from the columns they sum (Django refuses the shadowing).
    totals = invoices.aggregate(
        invoice_count=Count("pk"),
        sum_total=Sum("total_amount"),
        sum_net=Sum("net_amount"),
        sum_tax=Sum("tax_amount"),
        open_count=Count("pk", filter=is_open),
        sum_open=Sum("total_amount", filter=is_open),
        first_issue_date=Min("issue_date"),
        last_issue_date=Max("issue_date"),
    )
    money = {
        "total_amount": "sum_total",
        "net_amount": "sum_net",
        "tax_amount": "sum_tax",
        "open_amount": "sum_open",
    }
    return {
        **{name: value for name, value in totals.items() if not name.startswith("sum_")},
        **{name: totals[total] or Decimal("0") for name, total in money.items()},
    }


# --- what an export streams --------------------------------------------------------------------
def patient_profile_ids_list(
    organization: Organization, *, filters: selectors.ProfileFilters, ordering: str
) -> list[int]:
    """The ids of the profiles a filtered list holds, in its order (8 bytes a patient: the
    rows themselves are read in chunks by `patient_profiles_by_id`)."""
    profiles = selectors.patient_profile_list(organization, filters=filters, ordering=ordering)
    return list(profiles.values_list("patient_id", flat=True))


def patient_profiles_by_id(
    organization: Organization, *, patient_ids: list[int]
) -> dict[int, PatientProfile]:
    profiles = selectors.patient_profiles(organization).filter(patient_id__in=patient_ids)
    return {profile.patient_id: profile for profile in profiles}
