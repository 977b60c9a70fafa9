"""Reads behind the dashboard: how many patients, today's and this week's appointments (in the
clinic's calendar), the last sync, and the organization's recent activity, newest first.

Activity is read from the organization's own records, one index-ordered top-N per source
(sync runs, bookings made, cancellations, missed appointments), merged by the caller. Sources
that share an instant are ordered by `ACTIVITY_SOURCES`, then by id (newest first), so a page
boundary (`ActivityCursor`) never repeats or skips an event.

The dashboard is the one screen that reads across apps: the sync runs come from `sync`, read
here through its public selectors and models only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, DateTimeField, Max, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from clinics.models import Organization, PmsConnection
from clinics.tenancy import PmsKind
from patients.models import Appointment, AppointmentType, Patient
from patients.outcomes import Outcome, outcome_expression
from sync.models import SyncRun, SyncStatus
from sync.selectors import sync_run_list

# At one instant: a sync run first, then bookings, cancellations, missed appointments.
ACTIVITY_SOURCES = ("sync", "booking", "cancellation", "dna")
CURSOR_PATTERN = rf"^-?[0-9]{{1,18}}\.({'|'.join(ACTIVITY_SOURCES)})\.[0-9]{{1,19}}$"
CURSOR_RE = re.compile(
    rf"(?P<micros>-?[0-9]{{1,18}})\.(?P<source>{'|'.join(ACTIVITY_SOURCES)})\.(?P<id>[0-9]{{1,19}})"
)
SYNC_EVENT_TYPES = {
    SyncStatus.QUEUED: "sync_queued",
    SyncStatus.RUNNING: "sync_started",
    SyncStatus.COMPLETED: "sync_completed",
    SyncStatus.PARTIAL: "sync_partial",
    SyncStatus.FAILED: "sync_failed",
}
APPOINTMENT_EVENT_TYPES = ("booking", "cancellation", "late_cancellation", "dna")
SYNC_COUNTS = ("fetched", "created", "updated", "archived", "deleted", "failed")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@dataclass(frozen=True)
class ActivityCursor:
    """Where a page of activity ended: events after it are strictly older in the feed's order
    (occurred_at descending, then source rank, then id descending)."""

    occurred_at: datetime
    rank: int  # ACTIVITY_SOURCES index; len(ACTIVITY_SOURCES) means "before this instant"
    id: int = 0

    @classmethod
    def after_event(cls, *, occurred_at: datetime, source: str, record_id: int) -> ActivityCursor:
        return cls(occurred_at, ACTIVITY_SOURCES.index(source), record_id)

    @classmethod
    def before_moment(cls, moment: datetime) -> ActivityCursor:
        return cls(moment, len(ACTIVITY_SOURCES))

    @classmethod
    def parse(cls, token: str) -> ActivityCursor | None:
        """The cursor `token()` wrote, or None when `token` is not one. Values past what a
        cursor can hold are brought within it (they mean "later than everything")."""
        match = CURSOR_RE.fullmatch(token)
        if match is None:
            return None
        micros = int(match["micros"])
        try:
            moment = min(_EPOCH + timedelta(microseconds=micros), _LATEST)
        except OverflowError:  # beyond year 9999 or before year 1
            moment = _LATEST if micros > 0 else _EARLIEST
        return cls.after_event(
            occurred_at=moment, source=match["source"], record_id=min(int(match["id"]), 2**63 - 1)
        )

    def token(self) -> str:
        micros = (self.occurred_at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}.{ACTIVITY_SOURCES[self.rank]}.{self.id}"

    def older(self, field: str, *, source: str) -> Q:
        """The rows of `source` after this cursor, `field` being their moment. The bound on
        `field` alone is always there, so the index on it serves the range."""
        rank, moment = ACTIVITY_SOURCES.index(source), self.occurred_at
        if rank > self.rank:
            return Q(**{f"{field}__lte": moment})
        if rank < self.rank:
            return Q(**{f"{field}__lt": moment})
        return Q(**{f"{field}__lte": moment}) & (Q(**{f"{field}__lt": moment}) | Q(pk__lt=self.id))


# --- headline counts -----------------------------------------------------------------------------
def dashboard_patient_counts(organization: Organization) -> dict[str, int]:
    """Patients held, and those active (not archived, deleted or merged away), as
    `patients.selectors.patient_sync_stats` counts them."""
    current = Q(archived_at__isnull=True, deleted_at__isnull=True, merged_at__isnull=True)
    return Patient.objects.for_org(organization).aggregate(
        total=Count("pk"), active=Count("pk", filter=current)
    )


@dataclass(frozen=True)
class ClinicWeek:
    today: date
    first_day: date  # Monday
    last_day: date  # Sunday


def clinic_week(organization: Organization, *, now: datetime) -> ClinicWeek:
    today = now.astimezone(organization.tzinfo).date()
    monday = today - timedelta(days=today.weekday())
    return ClinicWeek(today, monday, monday + timedelta(days=6))


def _midnight(organization: Organization, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=organization.tzinfo).astimezone(UTC)


def counted_appointments(organization: Organization) -> QuerySet[Appointment]:
    """What the clinic KPIs count (patients.kpis): current appointments of a patient, of a type
    the organization does not exclude."""
    appointments = Appointment.objects.for_org(organization).current().filter(patient__isnull=False)
    excluded = organization.retention.excluded_appointment_type_ids
    if excluded:
        types = AppointmentType.objects.for_org(organization).filter(external_id__in=excluded)
        appointments = appointments.exclude(appointment_type_id__in=types.values("pk"))
    return appointments


_OUTCOME_COUNTS = {
    "attended": (Outcome.ATTENDED,),
    "booked": (Outcome.BOOKED,),
    "dna": (Outcome.DNA,),
    "cancelled": (Outcome.CANCELLED, Outcome.LATE_CANCELLED),
    "late_cancelled": (Outcome.LATE_CANCELLED,),
}


def dashboard_appointment_counts(organization: Organization, *, now: datetime) -> dict[str, Any]:
    """Appointments starting today and this week (Monday to Sunday), in the clinic's calendar,
    by outcome as of `now` (one aggregate over the week's range of the starts_at index)."""
    week = clinic_week(organization, now=now)
    ranges = {
        "today": (
            _midnight(organization, week.today),
            _midnight(organization, week.today + timedelta(days=1)),
        ),
        "this_week": (
            _midnight(organization, week.first_day),
            _midnight(organization, week.last_day + timedelta(days=1)),
        ),
    }
    late = organization.retention.late_cancellation_hours
    appointments = counted_appointments(organization).filter(
        starts_at__gte=ranges["this_week"][0], starts_at__lt=ranges["this_week"][1]
    )
    aggregates = {}
    for name, (start, end) in ranges.items():
        within = Q(starts_at__gte=start, starts_at__lt=end)
        aggregates[f"{name}.appointments"] = Count("pk", filter=within)
        for figure, outcomes in _OUTCOME_COUNTS.items():
            aggregates[f"{name}.{figure}"] = Count("pk", filter=within & Q(outcome__in=outcomes))
    counts = appointments.annotate(
        outcome=outcome_expression(now=now, late_cancellation_hours=late)
    ).aggregate(**aggregates)
    result: dict[str, Any] = {
        "time_zone": organization.time_zone,
        "today": {"date": week.today},
        "this_week": {"first_day": week.first_day, "last_day": week.last_day},
    }
    for key, value in counts.items():
        name, figure = key.split(".")
        result[name][figure] = value
    return result


def dashboard_last_sync(organization: Organization, *, now: datetime) -> dict[str, Any]:
    """The newest sync run (any connection) and how old the data is: minutes since the newest
    successful sync of any connection (None: never synced)."""
    run = (
        sync_run_list(organization)
        .order_by("-created_at", "-pk")
        .only(
            "id", "pms", "mode", "trigger", "status", "created_at", "started_at", "finished_at", "error_code"
        )
        .first()
    )
    synced = PmsConnection.objects.for_org(organization).aggregate(at=Max("last_successful_sync_at"))["at"]
    age = None if synced is None else max(0, math.floor((now - synced).total_seconds() / 60))
    return {"run": run, "last_successful_sync_at": synced, "data_age_minutes": age}


# --- activity --------------------------------------------------------------------------------------
def _activity_appointments(organization: Organization) -> QuerySet[Appointment]:
    return (
        Appointment.objects.for_org(organization)
        .current()
        .select_related("patient", "appointment_type", "practitioner")
        .only(
            "id",
            "organization_id",
            "starts_at",
            "pms_created_at",
            "cancelled_at",
            "did_not_arrive",
            "patient__id",
            "patient__first_name",
            "patient__last_name",
            "appointment_type__name",
            "practitioner__title",
            "practitioner__first_name",
            "practitioner__last_name",
        )
    )


def _page(
    rows: QuerySet[Any], *, field: str, source: str, before: ActivityCursor | None, limit: int
) -> list[Any]:
    if before is not None:
        rows = rows.filter(before.older(field, source=source))
    order = (f"-{field}", "-pk")
    # The top N ids first, on the one table, and only then their related rows: otherwise the
    # planner may join every candidate row before it sorts them.
    newest = rows.order_by(*order).values("pk")[:limit]
    return list(rows.filter(pk__in=newest).order_by(*order))


def activity_bookings(
    organization: Organization, *, before: ActivityCursor | None, limit: int
) -> list[Appointment]:
    """The newest appointments by when they were made in the PMS (`pms_created_at`)."""
    rows = _activity_appointments(organization).filter(pms_created_at__isnull=False)
    return _page(rows, field="pms_created_at", source="booking", before=before, limit=limit)


def activity_cancellations(
    organization: Organization, *, before: ActivityCursor | None, limit: int
) -> list[Appointment]:
    rows = _activity_appointments(organization).filter(cancelled_at__isnull=False)
    return _page(rows, field="cancelled_at", source="cancellation", before=before, limit=limit)


def activity_dnas(
    organization: Organization, *, before: ActivityCursor | None, limit: int
) -> list[Appointment]:
    """Missed appointments (not cancelled, did not arrive), by when they were due. Only past
    ones can be missed: the bound lets the starts_at index begin at now, not at the last booking."""
    rows = _activity_appointments(organization).filter(
        cancelled_at__isnull=True, did_not_arrive=True, starts_at__lte=timezone.now()
    )
    return _page(rows, field="starts_at", source="dna", before=before, limit=limit)


def activity_sync_runs(
    organization: Organization, *, before: ActivityCursor | None, limit: int
) -> list[SyncRun]:
    """The newest sync runs by their latest moment (finished, else started, else queued), each
    annotated with it as `occurred_at`. Runs are few (one an hour or so), so ordering them by
    that expression needs no index of its own."""
    runs = (
        sync_run_list(organization)
        .annotate(
            occurred_at=Coalesce("finished_at", "started_at", "created_at", output_field=DateTimeField())
        )
        .only(
            "id",
            "organization_id",
            "pms",
            "mode",
            "trigger",
            "status",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",  # duration_seconds of a running run
            "stats",
            "error_code",
        )
    )
    return _page(runs, field="occurred_at", source="sync", before=before, limit=limit)


# --- activity as the feed shows it -------------------------------------------------------------------
# An event is (its place in the feed, the item): the place sorts newest first with reverse=True.
Event = tuple[tuple[datetime, int, int], dict[str, Any]]


def _when(moment: datetime, tz: Any) -> str:
    local = moment.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M}"


def _appointment_event(appointment: Appointment, *, source: str, tz: Any, late_notice: timedelta) -> Event:
    patient, kind, practitioner = appointment.patient, appointment.appointment_type, appointment.practitioner
    name = patient.full_name if patient else None
    who = name or "A patient"
    what = (kind.name if kind else "an appointment") + (f" with {practitioner}" if practitioner else "")
    when = _when(appointment.starts_at, tz)
    if source == "booking":
        kind_of, occurred_at = "booking", appointment.pms_created_at
        sentence = f"{who} booked {what} for {when}."
    elif source == "cancellation":
        occurred_at = appointment.cancelled_at
        late = appointment.starts_at - occurred_at < late_notice
        kind_of = "late_cancellation" if late else "cancellation"
        notice = f", less than {late_notice.total_seconds() / 3600:g} h before it" if late else ""
        sentence = f"{who} cancelled {what} on {when}{notice}."
    else:
        kind_of, occurred_at = "dna", appointment.starts_at
        sentence = f"{who} did not arrive for {what} on {when}."
    item = {
        "type": kind_of,
        "occurred_at": occurred_at,
        "description": sentence,
        "patient_id": patient.pk if patient else None,
        "patient_name": name,
        "appointment_id": appointment.pk,
        "run_id": None,
        "appointment": {
            "starts_at": appointment.starts_at,
            "appointment_type": kind.name if kind else None,
            "practitioner": str(practitioner) if practitioner else None,
        },
        "sync": None,
    }
    return (occurred_at, -ACTIVITY_SOURCES.index(source), appointment.pk), item


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f" in {seconds:.0f} s" if seconds < 90 else f" in {seconds / 60:.0f} min"


def _changes(counts: dict[str, int]) -> str:
    said = [
        f"{counts[name]} {name}" for name in ("created", "updated", "archived", "deleted") if counts[name]
    ]
    if counts["failed"]:
        said.append(f"{counts['failed']} could not be stored")
    return ", ".join(said) or "no changes"


def _sync_event(run: SyncRun) -> Event:
    counts = dict.fromkeys(SYNC_COUNTS, 0)
    for resource in (run.stats or {}).values():
        for name in SYNC_COUNTS:
            counts[name] += int(resource.get(name) or 0) if isinstance(resource, dict) else 0
    pms = PmsKind(run.pms).label if run.pms in PmsKind.values else run.pms
    sentences = {
        SyncStatus.QUEUED: f"{pms} sync queued ({run.mode}).",
        SyncStatus.RUNNING: f"{pms} sync started ({run.mode}).",
        SyncStatus.COMPLETED: f"{pms} sync completed{_duration(run.duration_seconds)}: {_changes(counts)}.",
        SyncStatus.PARTIAL: f"{pms} sync finished with errors{_duration(run.duration_seconds)}: "
        f"{_changes(counts)}.",
        SyncStatus.FAILED: f"{pms} sync failed{_duration(run.duration_seconds)}"
        + (f" ({run.error_code})." if run.error_code else "."),
    }
    item = {
        "type": SYNC_EVENT_TYPES.get(run.status, f"sync_{run.status}"),
        "occurred_at": run.occurred_at,
        "description": sentences.get(run.status, f"{pms} sync {run.status}."),
        "patient_id": None,
        "patient_name": None,
        "appointment_id": None,
        "run_id": run.pk,
        "appointment": None,
        "sync": {
            "pms": run.pms,
            "mode": run.mode,
            "trigger": run.trigger,
            "status": run.status,
            "counts": counts,
            "duration_seconds": run.duration_seconds,
            "error_code": run.error_code or None,
        },
    }
    return (run.occurred_at, -ACTIVITY_SOURCES.index("sync"), run.pk), item


_APPOINTMENT_SOURCES: dict[str, Callable[..., list[Appointment]]] = {
    "booking": activity_bookings,
    "cancellation": activity_cancellations,
    "dna": activity_dnas,
}


def appointment_activity(
    organization: Organization, *, before: ActivityCursor | None, limit: int
) -> list[Event]:
    """The newest `limit` events of each appointment source after `before` (names and times
    in the clinic's zone)."""
    tz = organization.tzinfo
    late_notice = timedelta(hours=organization.retention.late_cancellation_hours)
    return [
        _appointment_event(appointment, source=source, tz=tz, late_notice=late_notice)
        for source, read in _APPOINTMENT_SOURCES.items()
        for appointment in read(organization, before=before, limit=limit)
    ]


def sync_activity(organization: Organization, *, before: ActivityCursor | None, limit: int) -> list[Event]:
    return [_sync_event(run) for run in activity_sync_runs(organization, before=before, limit=limit)]


def activity_merged(events: list[Event], *, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """The newest `limit` items of `events` (each source's newest `limit` + 1, so that one more
    says whether a next page exists), and the cursor of that next page."""
    ordered = sorted(events, key=lambda event: event[0], reverse=True)
    page = ordered[:limit]
    if len(ordered) <= limit:
        return [item for _, item in page], None
    (moment, rank, record_id), _ = page[-1]
    return [item for _, item in page], ActivityCursor(moment, -rank, record_id).token()
