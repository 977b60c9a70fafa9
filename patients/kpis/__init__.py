"""Clinic KPIs (retention-metrics.md, "Clinic KPIs"), computed set-based in PostgreSQL.

- `clinic_kpis(org, start=, end=)`: every KPI of one clinic-local date range, optionally per
  practitioner or location.
- `clinic_kpi_comparison(org, start=, end=)`: the same beside the period of equal length just
  before it, with the changes; both periods come from one statement.
- `clinic_kpi_series(org, start=, end=)`: daily counts for charts, one point per local day.

Cohort retention (of the new patients of month m, the share with an attended visit in m + k)
comes with the KPIs of the (last) period when asked for.

Dates are the organization's local dates; a period [start, end] runs from local midnight of
`start` to local midnight after `end`. Figures that depend on the clock (attended or still
pending) are as of `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from clinics.models import Organization
from clinics.rls import tenant_scope
from clinics.tenancy import large_statement_settings
from patients.kpis import sql
from patients.kpis.figures import KPI_DEFINITIONS, changes, cohort_rows, kpis_from_row, series_point
from patients.models import AppointmentType, ProfileBaseline

__all__ = [
    "GROUP_BY_CHOICES",
    "KPI_DEFINITIONS",
    "Period",
    "clinic_kpi_comparison",
    "clinic_kpi_series",
    "clinic_kpis",
    "clinic_today",
]

GROUP_BY_CHOICES = ("practitioner", "location")


@dataclass(frozen=True)
class Period:
    """Clinic-local days `start` to `end`, both included."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("a period ends on or after the day it starts")

    @classmethod
    def ending(cls, end: date, *, days: int) -> Period:
        return cls(end - timedelta(days=days - 1), end)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of equal length just before this one."""
        return Period.ending(self.start - timedelta(days=1), days=self.days)

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "days": self.days}


def clinic_today(organization: Organization, *, now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(organization.tzinfo).date()


def _midnight(organization: Organization, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=organization.tzinfo).astimezone(UTC)


def _excluded_type_ids(organization: Organization) -> list[int]:
    wanted = organization.retention.excluded_appointment_type_ids
    if not wanted:
        return []
    return list(
        AppointmentType.objects.for_org(organization)
        .filter(external_id__in=wanted)
        .values_list("pk", flat=True)
    )


def _params(
    organization: Organization, *, days: list[date], now: datetime, rebook: bool, cohorts: bool
) -> dict[str, Any]:
    """Statement parameters for consecutive periods whose first days (and the day after the
    last) are `days`."""
    retention = organization.retention
    baseline = ProfileBaseline.objects.for_org(organization).values_list("median_interval_days", flat=True)
    median = next(iter(baseline), None)
    bounds = [_midnight(organization, day) for day in days]
    every_day = [days[0] + timedelta(days=n) for n in range((days[-1] - days[0]).days + 1)]
    return {
        "org": organization.pk,
        "tz": organization.time_zone,
        "now": now,
        "bounds": bounds,
        "midnights": [_midnight(organization, day) for day in every_day],
        "days": days,
        "range_start": bounds[0],
        "range_end": bounds[-1],
        "late": timedelta(hours=retention.late_cancellation_hours),
        "excluded": _excluded_type_ids(organization),
        "rebook": rebook,
        "cohorts": cohorts,
        "l_soft": retention.lapse_soft_days,
        "visits": retention.expected_interval_visits,
        "fallback_interval": float(median if median is not None else retention.default_interval_days),
    }


def _fetch(statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        large_statement_settings(cursor)  # it sorts up to a few million narrow rows
        cursor.execute(statement, params)
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _kpi_rows(
    organization: Organization,
    *,
    periods: list[Period],
    group_by: str | None,
    now: datetime,
    rebook: bool,
    cohorts: bool = False,
) -> list[dict[str, Any]]:
    if group_by not in (None, *GROUP_BY_CHOICES):
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY_CHOICES)}")
    days = [period.start for period in periods] + [periods[-1].end + timedelta(days=1)]
    with tenant_scope(organization):
        params = _params(organization, days=days, now=now, rebook=rebook, cohorts=cohorts)
        return _fetch(sql.kpi_sql(group_by, visits=params["visits"]), params)


def _total(rows: list[dict[str, Any]], *, bucket: int) -> dict[str, Any] | None:
    return next((row for row in rows if row["is_total"] and row["bucket"] == bucket), None)


def _groups(rows: list[dict[str, Any]], *, group_by: str) -> dict[Any, dict[str, Any]]:
    """Each practitioner or location seen in any period: its id, name and rows by period."""
    groups: dict[Any, dict[str, Any]] = {}
    for row in rows:
        if not row["is_total"]:
            key = row["key"]
            name = row["name"] or ("Unassigned" if key is None else f"{group_by.title()} {key}")
            groups.setdefault(key, {"id": key, "name": name, "rows": {}})["rows"][row["bucket"]] = row
    return groups


def clinic_kpis(
    organization: Organization,
    *,
    start: date,
    end: date,
    group_by: str | None = None,
    with_cohorts: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every clinic KPI of the local days `start`..`end` (and per group when `group_by`)."""
    now = now or timezone.now()
    period = Period(start, end)
    currency = organization.currency
    rows = _kpi_rows(
        organization, periods=[period], group_by=group_by, now=now, rebook=True, cohorts=with_cohorts
    )
    total = _total(rows, bucket=1)
    report: dict[str, Any] = {"period": period.as_dict(), "kpis": kpis_from_row(total, currency=currency)}
    if with_cohorts:
        report["cohorts"] = _cohorts_of(total, organization=organization, now=now)
    if group_by:
        report["groups"] = [
            {"id": g["id"], "name": g["name"], "kpis": kpis_from_row(g["rows"].get(1), currency=currency)}
            for g in _groups(rows, group_by=group_by).values()
        ]
    return report


def _compared(
    current: dict[str, Any] | None, previous: dict[str, Any] | None, *, currency: str
) -> dict[str, Any]:
    return {
        "current": kpis_from_row(current, currency=currency),
        "previous": kpis_from_row(previous, currency=currency),
        "changes": changes(
            kpis_from_row(current, currency=currency, exact=True),
            kpis_from_row(previous, currency=currency, exact=True),
        ),
    }


def clinic_kpi_comparison(
    organization: Organization,
    *,
    start: date,
    end: date,
    group_by: str | None = None,
    with_cohorts: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The KPIs of `start`..`end` and of the period of equal length before it, with changes."""
    now = now or timezone.now()
    period = Period(start, end)
    previous = period.previous()
    currency = organization.currency
    rows = _kpi_rows(
        organization,
        periods=[previous, period],
        group_by=group_by,
        now=now,
        rebook=True,
        cohorts=with_cohorts,
    )
    current_row = _total(rows, bucket=2)
    report: dict[str, Any] = {
        "period": period.as_dict(),
        "previous_period": previous.as_dict(),
        **_compared(current_row, _total(rows, bucket=1), currency=currency),
    }
    if with_cohorts:
        report["cohorts"] = _cohorts_of(current_row, organization=organization, now=now)
    if group_by:
        report["groups"] = [
            {
                "id": g["id"],
                "name": g["name"],
                **_compared(g["rows"].get(2), g["rows"].get(1), currency=currency),
            }
            for g in _groups(rows, group_by=group_by).values()
        ]
    return report


def _cohorts_of(
    row: dict[str, Any] | None, *, organization: Organization, now: datetime
) -> list[dict[str, Any]]:
    return cohort_rows((row or {}).get("cohorts") or [], today=clinic_today(organization, now=now))


def clinic_kpi_series(
    organization: Organization, *, start: date, end: date, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Daily counts over `start`..`end`, one point per local day, days without events as zeros."""
    period = Period(start, end)
    days = [start + timedelta(days=n) for n in range(period.days)]
    rows = _kpi_rows(
        organization,
        periods=[Period(day, day) for day in days],
        group_by=None,
        now=now or timezone.now(),
        rebook=False,  # charts show counts, not rebooking: no questions about attended visits
    )
    by_bucket = {row["bucket"]: row for row in rows}
    return [series_point(day, by_bucket.get(n)) for n, day in enumerate(days, start=1)]
