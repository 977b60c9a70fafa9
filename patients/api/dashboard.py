"""The dashboard endpoints (paths from the frontend contract): the first paint in one call, the
headline summary, the activity feed, the KPIs of a period beside the one before, daily series.

What only changes with the data is answered from the organization's versioned cache (see
patients.api.answers), keyed by the clinic's date for anything relative to today; what moves
without a data change (sync runs starting, failing, the data's age) is read on every request
and put beside it. The module-level `*_answer` functions return the JSON the views send (less
the envelope's own fields), so the same calls warm the cache after a sync.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from django.core.cache import caches
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.models import Organization
from patients import dashboard
from patients.api import reengagement
from patients.api.answers import answer_cached, answer_rendered, answer_response, data_as_of
from patients.api.profiles import ProfileView, _choice
from patients.kpis import KPI_DEFINITIONS, Period, clinic_kpi_comparison, clinic_kpi_series, clinic_today
from routiq.api.errors import ValidationFailed
from routiq.api.pagination import integer_parameter, invalid, query_datetime, query_integer
from routiq.api.schema import ORG_SCOPED_ERRORS, error_responses
from routiq.api.schema import envelope as envelope_schema
from sync.models import SyncRun, SyncStatus

TIMEFRAMES = ("7d", "30d", "90d", "1y")
DEFAULT_TIMEFRAME = "30d"
SUMMARY_TIMEFRAME = "30d"  # the summary's KPIs: the last 30 days beside the 30 before
# Declared as text in answers: a second `timeframe` enum beside the re-engagement one would
# collide in the schema's component names (the query parameter lists the values).
TIMEFRAME_HELP = "As asked: 7d, 30d, 90d or 1y"
_TIMEFRAME_DAYS = {"7d": 7, "30d": 30, "90d": 90}
ACTIVITY_MAX = 100
ACTIVITY_DEFAULT = 20
FIRST_PAINT_ACTIVITY_DEFAULT = 10
# Sync runs move outside the data version (a run's status, every page), so the dashboard reads
# them live: shared for this long between the requests of all an organization's screens (the
# live page hears of a run's every step over the WebSocket anyway).
LIVE_SYNC_SECONDS = 2


# --- periods -----------------------------------------------------------------------------------------
def _year_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def timeframe_period(organization: Organization, *, timeframe: str, now: datetime) -> Period:
    """The clinic-local days of `timeframe`, today the last of them (`1y`: the twelve months
    since this date last year)."""
    today = clinic_today(organization, now=now)
    if timeframe == "1y":
        return Period(_year_before(today) + timedelta(days=1), today)
    return Period.ending(today, days=_TIMEFRAME_DAYS[timeframe])


def _day_params(organization: Organization, now: datetime, **params: Any) -> dict[str, Any]:
    # The clinic's date is part of the key: "today" moves at its midnight.
    return {
        **params,
        "day": clinic_today(organization, now=now).isoformat(),
        "time_zone": organization.time_zone,
        "currency": organization.currency,
    }


def _merged(live: dict[str, Any], rendered: bytes) -> bytes:
    """One JSON object: the fields of `live`, then those of `rendered` (an object)."""
    return JSONRenderer().render(live)[:-1] + b"," + rendered[1:]


# --- analytics and charts ------------------------------------------------------------------------
def dashboard_analytics_answer(organization: Organization, *, timeframe: str = DEFAULT_TIMEFRAME) -> bytes:
    now = timezone.now()
    period = timeframe_period(organization, timeframe=timeframe, now=now)

    def compute() -> tuple[str, Any, dict[str, Any]]:
        report = clinic_kpi_comparison(organization, start=period.start, end=period.end, now=now)
        analytics = {"timeframe": timeframe, "time_zone": organization.time_zone, **report}
        return "analytics", {**analytics, "definitions": KPI_DEFINITIONS}, {}

    params = _day_params(organization, now, timeframe=timeframe)
    return answer_rendered(organization, "dashboard.analytics", params, compute, data_only=True)


def dashboard_charts_answer(organization: Organization, *, timeframe: str = DEFAULT_TIMEFRAME) -> bytes:
    now = timezone.now()
    period = timeframe_period(organization, timeframe=timeframe, now=now)

    def compute() -> tuple[str, Any, dict[str, Any]]:
        series = clinic_kpi_series(organization, start=period.start, end=period.end, now=now)
        charts = {
            "timeframe": timeframe,
            "time_zone": organization.time_zone,
            "period": period.as_dict(),
            "currency": organization.currency,
            "series": series,
        }
        return "charts", charts, {}

    params = _day_params(organization, now, timeframe=timeframe)
    return answer_rendered(organization, "dashboard.charts", params, compute, data_only=True)


# --- the summary -------------------------------------------------------------------------------------
def _live(
    organization: Organization,
    name: str,
    params: tuple[Any, ...],
    read: Callable[[], Any],
    *,
    shared: bool = True,
) -> Any:
    """`read()`, or (`shared`) what it gave under the same name and params less than
    LIVE_SYNC_SECONDS ago."""
    if not shared:
        return read()
    key = f"live:{organization.pk}:{name}:" + ":".join(str(part) for part in params)
    # Wrapped, so that a None answer is remembered too.
    return caches["default"].get_or_set(key, lambda: (read(),), LIVE_SYNC_SECONDS)[0]


def last_sync_data(organization: Organization, *, shared: bool = True) -> dict[str, Any]:
    return _live(organization, "last_sync", (), lambda: _last_sync_data(organization), shared=shared)


def _last_sync_data(organization: Organization) -> dict[str, Any]:
    state = dashboard.dashboard_last_sync(organization, now=timezone.now())
    run: SyncRun | None = state["run"]
    return {
        "run_id": run.pk if run else None,
        "pms": run.pms if run else None,
        "status": run.status if run else None,
        "mode": run.mode if run else None,
        "trigger": run.trigger if run else None,
        "created_at": run.created_at if run else None,
        "started_at": run.started_at if run else None,
        "finished_at": run.finished_at if run else None,
        "error_code": (run.error_code or None) if run else None,
        "last_successful_sync_at": state["last_successful_sync_at"],
        "data_age_minutes": state["data_age_minutes"],
    }


def dashboard_summary_answer(organization: Organization, *, shared: bool = True) -> bytes:
    """The headline numbers. The profile figures are the re-engagement summary's answer and the
    KPIs the 30-day analytics answer, each from its own cache entry (computed once for both)."""
    now = timezone.now()

    def compute() -> tuple[str, Any, dict[str, Any]]:
        profiles = json.loads(reengagement.dashboard_summary_answer(organization))["summary"]
        analytics = json.loads(dashboard_analytics_answer(organization, timeframe=SUMMARY_TIMEFRAME))
        kpis = {name: value for name, value in analytics["analytics"].items() if name != "definitions"}
        # Read from the patients alone: once per data version, not again at each expiry.
        counts = answer_cached(
            organization,
            "dashboard.patients",
            {},
            lambda: dashboard.dashboard_patient_counts(organization),
            data_only=True,
        )
        patients = {
            **counts,
            "with_upcoming_appointment": profiles["with_upcoming"],
        }
        summary = {
            "patients": patients,
            "appointments": dashboard.dashboard_appointment_counts(organization, now=now),
            "profiles": profiles,
            "kpis": kpis,
        }
        return "summary", summary, {}

    cached = answer_rendered(organization, "dashboard.summary", _day_params(organization, now), compute)
    return _merged({"last_sync": last_sync_data(organization, shared=shared)}, cached)


# --- activity ------------------------------------------------------------------------------------
def _appointment_events(
    organization: Organization, *, before: dashboard.ActivityCursor | None, limit: int
) -> dict[str, Any]:
    """The appointment sources' events, cached by data version (appointments change only with
    the data; sync runs are read live, beside them)."""

    def compute() -> dict[str, Any]:
        return {
            "events": dashboard.appointment_activity(organization, before=before, limit=limit),
            "data_as_of": data_as_of(organization),
        }

    params = {
        "limit": limit,
        "before": None if before is None else (before.occurred_at, before.rank, before.id),
        "time_zone": organization.time_zone,
        "late_hours": organization.retention.late_cancellation_hours,
    }
    return answer_cached(organization, "dashboard.activity", params, compute, data_only=True)


def activity_page(
    organization: Organization,
    *,
    limit: int = ACTIVITY_DEFAULT,
    before: dashboard.ActivityCursor | None = None,
    shared: bool = True,
) -> dict[str, Any]:
    """The newest `limit` events after `before`, from every source, and the next page's cursor
    (the sync runs read live: `shared` for LIVE_SYNC_SECONDS, or now)."""
    cached = _appointment_events(organization, before=before, limit=limit + 1)
    runs = _live(
        organization,
        "sync_activity",
        # Not before.token(): a "before this instant" cursor has no source to name.
        (limit + 1, *((before.occurred_at.timestamp(), before.rank, before.id) if before else ())),
        lambda: dashboard.sync_activity(organization, before=before, limit=limit + 1),
        shared=shared,
    )
    items, next_before = dashboard.activity_merged([*cached["events"], *runs], limit=limit)
    return {
        "activity": items,
        "count": len(items),
        "limit": limit,
        "next_before": next_before,
        "data_as_of": cached["data_as_of"],
    }


def dashboard_activity_answer(
    organization: Organization,
    *,
    limit: int = ACTIVITY_DEFAULT,
    before: dashboard.ActivityCursor | None = None,
) -> bytes:
    return JSONRenderer().render(activity_page(organization, limit=limit, before=before))


def dashboard_answer(
    organization: Organization, *, activity_limit: int = FIRST_PAINT_ACTIVITY_DEFAULT
) -> bytes:
    """The first paint: the summary (with the last sync) and the newest activity.

    Made whole with its live parts read at that moment, then shared for LIVE_SYNC_SECONDS
    under the data version: a clinic's screens asking at once cost one cache read each (not
    five, and no rendering), a data change shows at once, and what it says of sync runs is
    never older than the live parts of the other endpoints."""

    def compose() -> bytes:
        activity = activity_page(organization, limit=activity_limit, shared=False)
        del activity["data_as_of"]  # the summary's is the same
        return _merged(activity, dashboard_summary_answer(organization, shared=False))

    params = {"activity_limit": activity_limit}
    return answer_cached(organization, "dashboard.first_paint", params, compose, seconds=LIVE_SYNC_SECONDS)


# --- the same, declared for the OpenAPI schema ---------------------------------------------------
def _fields(names: tuple[str, ...], make: Callable[[str], serializers.Field]) -> dict[str, serializers.Field]:
    return {name: make(name) for name in names}


def _serializer(name: str, fields: dict[str, serializers.Field]) -> type[serializers.Serializer]:
    return type(name, (serializers.Serializer,), fields)


class DashboardPatientsSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Patient records held")
    active = serializers.IntegerField(help_text="Not archived, deleted or merged away")
    with_upcoming_appointment = serializers.IntegerField(help_text="Holding a future booking now")


_DAY_COUNTS = {
    "appointments": "Starting then (current, of counted types, of a patient), whatever their outcome",
    "attended": "Not cancelled or missed, and started (or the patient arrived)",
    "booked": "Still to come",
    "dna": "Did not arrive",
    "cancelled": "Cancelled, late ones included",
    "late_cancelled": "Cancelled at short notice (the organization's setting, default 24 h)",
}
DashboardDayCountsSerializer = _serializer(
    "DashboardDayCountsSerializer",
    {name: serializers.IntegerField(help_text=text) for name, text in _DAY_COUNTS.items()},
)


class DashboardTodaySerializer(DashboardDayCountsSerializer):
    date = serializers.DateField(help_text="Today in the clinic's time zone")


class DashboardWeekSerializer(DashboardDayCountsSerializer):
    first_day = serializers.DateField(help_text="Monday")
    last_day = serializers.DateField(help_text="Sunday")


class DashboardAppointmentsSerializer(serializers.Serializer):
    time_zone = serializers.CharField()
    today = DashboardTodaySerializer()
    this_week = DashboardWeekSerializer()


DashboardPeriodSerializer = _serializer(
    "DashboardPeriodSerializer",
    {
        "from": serializers.DateField(help_text="First clinic-local day"),
        "to": serializers.DateField(help_text="Last clinic-local day, included"),
        "days": serializers.IntegerField(),
    },
)
_KPI_MONEY = ("revenue", "credits")
_KPI_UNKNOWN = ("pva", "utilisation", "outreach_conversion")  # null when nothing to divide by, or unknown


def _kpi_field(name: str) -> serializers.Field:
    text = KPI_DEFINITIONS[name]
    if name.endswith("_rate") or name in _KPI_UNKNOWN:
        return serializers.FloatField(allow_null=True, help_text=f"{text} Null when nothing to divide by.")
    if name in _KPI_MONEY:
        return serializers.FloatField(help_text=text)
    return serializers.IntegerField(help_text=text)


# One field per figure the KPI engine defines (patients.kpis.KPI_DEFINITIONS), so the two agree.
DashboardKpisSerializer = _serializer(
    "DashboardKpisSerializer",
    {
        **_fields(tuple(KPI_DEFINITIONS), _kpi_field),
        "pva_definition": serializers.CharField(help_text="cliniko: attended / new_patients"),
        "currency": serializers.CharField(),
        "unavailable": serializers.DictField(
            child=serializers.CharField(), help_text="KPIs the data cannot give, with the reason"
        ),
    },
)


class DashboardKpiChangeSerializer(serializers.Serializer):
    change = serializers.FloatField(allow_null=True, help_text="Current - previous, in the figure's unit")
    relative_change = serializers.FloatField(allow_null=True, help_text="change / previous; null when 0")


class DashboardKpiComparisonSerializer(serializers.Serializer):
    timeframe = serializers.CharField(help_text=TIMEFRAME_HELP)
    time_zone = serializers.CharField()
    period = DashboardPeriodSerializer(help_text="Ends today, in the clinic's calendar")
    previous_period = DashboardPeriodSerializer(help_text="Of equal length, just before")
    current = DashboardKpisSerializer()
    previous = DashboardKpisSerializer()
    changes = serializers.DictField(child=DashboardKpiChangeSerializer(), help_text="Per figure")


class DashboardAnalyticsSerializer(DashboardKpiComparisonSerializer):
    definitions = serializers.DictField(child=serializers.CharField(), help_text="What each figure counts")


class DashboardSummarySerializer(serializers.Serializer):
    patients = DashboardPatientsSerializer()
    appointments = DashboardAppointmentsSerializer(help_text="Today and this week, in the clinic's calendar")
    profiles = reengagement.ReengagementDashboardSummarySerializer(
        help_text="Engagement levels, churn-risk bands, lifecycle stages, value at risk"
    )
    kpis = DashboardKpiComparisonSerializer(help_text="The last 30 days beside the 30 before")


class DashboardLastSyncSerializer(serializers.Serializer):
    run_id = serializers.IntegerField(allow_null=True, help_text="The newest sync run; null: none yet")
    pms = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=SyncStatus.choices, allow_null=True)
    mode = serializers.CharField(allow_null=True)
    trigger = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    error_code = serializers.CharField(allow_null=True)
    last_successful_sync_at = serializers.DateTimeField(allow_null=True, help_text="Of any connection")
    data_age_minutes = serializers.IntegerField(allow_null=True, help_text="Since then; null: never synced")


class DashboardSyncCountsSerializer(serializers.Serializer):
    fetched = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    archived = serializers.IntegerField()
    deleted = serializers.IntegerField()
    failed = serializers.IntegerField()


class DashboardActivitySyncSerializer(serializers.Serializer):
    pms = serializers.CharField()
    mode = serializers.CharField()
    trigger = serializers.CharField()
    status = serializers.ChoiceField(choices=SyncStatus.choices)
    counts = DashboardSyncCountsSerializer(help_text="Summed over the resources")
    duration_seconds = serializers.FloatField(allow_null=True)
    error_code = serializers.CharField(allow_null=True)


class DashboardActivityAppointmentSerializer(serializers.Serializer):
    starts_at = serializers.DateTimeField()
    appointment_type = serializers.CharField(allow_null=True)
    practitioner = serializers.CharField(allow_null=True)


class DashboardActivityItemSerializer(serializers.Serializer):
    type = serializers.ChoiceField(
        choices=[*dashboard.SYNC_EVENT_TYPES.values(), *dashboard.APPOINTMENT_EVENT_TYPES]
    )
    occurred_at = serializers.DateTimeField()
    description = serializers.CharField(help_text="The event in a sentence, times in the clinic's zone")
    patient_id = serializers.IntegerField(allow_null=True)
    patient_name = serializers.CharField(allow_null=True, allow_blank=True)
    appointment_id = serializers.IntegerField(allow_null=True)
    run_id = serializers.IntegerField(allow_null=True)
    appointment = DashboardActivityAppointmentSerializer(allow_null=True)
    sync = DashboardActivitySyncSerializer(allow_null=True)


class DashboardChartPointSerializer(serializers.Serializer):
    date = serializers.DateField(help_text="A clinic-local day")
    bookings = serializers.IntegerField(help_text="Appointments made that day")
    attended = serializers.IntegerField()
    cancellations = serializers.IntegerField(help_text="Excluding reschedules")
    dnas = serializers.IntegerField(help_text="Excluding reschedules")
    rescheduled = serializers.IntegerField()
    revenue = serializers.FloatField()
    new_patients = serializers.IntegerField()
    reactivations = serializers.IntegerField()


class DashboardChartsSerializer(serializers.Serializer):
    timeframe = serializers.CharField(help_text=TIMEFRAME_HELP)
    time_zone = serializers.CharField()
    period = DashboardPeriodSerializer()
    currency = serializers.CharField()
    series = DashboardChartPointSerializer(many=True, help_text="One point a day, oldest first, zeros kept")


DATA_AS_OF_HELP = "When the data was last brought up to date from the PMS"


class DashboardSummaryEnvelope(
    envelope_schema("DashboardSummaryBody", "summary", DashboardSummarySerializer)
):
    last_sync = DashboardLastSyncSerializer(help_text="Read now, not cached")
    data_as_of = serializers.DateTimeField(allow_null=True, help_text=DATA_AS_OF_HELP)


class DashboardActivityEnvelope(
    envelope_schema(
        "DashboardActivityBody",
        "activity",
        DashboardActivityItemSerializer(many=True, help_text="Newest first"),
    )
):
    count = serializers.IntegerField(help_text="Items on this page")
    limit = serializers.IntegerField()
    next_before = serializers.CharField(allow_null=True, help_text="`before` of the next page; null: none")
    data_as_of = serializers.DateTimeField(allow_null=True, help_text=DATA_AS_OF_HELP)


class DashboardEnvelope(DashboardSummaryEnvelope):
    activity = DashboardActivityItemSerializer(many=True, help_text="Newest first")
    count = serializers.IntegerField(help_text="Activity items")
    limit = serializers.IntegerField(help_text="activity_limit")
    next_before = serializers.CharField(
        allow_null=True, help_text="`before` for /activity's next page; null: none"
    )


class DashboardAnalyticsEnvelope(
    envelope_schema("DashboardAnalyticsBody", "analytics", DashboardAnalyticsSerializer)
):
    data_as_of = serializers.DateTimeField(allow_null=True, help_text=DATA_AS_OF_HELP)


class DashboardChartsEnvelope(envelope_schema("DashboardChartsBody", "charts", DashboardChartsSerializer)):
    data_as_of = serializers.DateTimeField(allow_null=True, help_text=DATA_AS_OF_HELP)


# --- the views -----------------------------------------------------------------------------------
def _timeframe(request: Request) -> str:
    return _choice(request, "timeframe", list(TIMEFRAMES)) or DEFAULT_TIMEFRAME


def _before(request: Request) -> dashboard.ActivityCursor | None:
    raw = request.query_params.get("before")
    if raw is None:
        return None
    cursor = dashboard.ActivityCursor.parse(raw)
    if cursor is not None:
        return cursor
    try:
        moment = query_datetime(request, "before")
    except ValidationFailed:
        raise invalid(
            "before",
            "Must be the next_before of an earlier page, or an ISO 8601 date-time with a UTC offset.",
        ) from None
    return dashboard.ActivityCursor.before_moment(moment)


def _limit(request: Request, name: str, default: int) -> int:
    return query_integer(request, name, default=default, least=1, most=ACTIVITY_MAX)


TIMEFRAME_PARAMETER = OpenApiParameter(
    "timeframe",
    {"type": "string", "enum": list(TIMEFRAMES), "default": DEFAULT_TIMEFRAME},
    description="The last 7, 30 or 90 days or 12 months, today (clinic-local) included.",
)


class DashboardView(ProfileView):
    @extend_schema(
        operation_id="dashboard",
        summary="The dashboard's first paint: the summary, the last sync and the newest activity",
        parameters=[
            integer_parameter(
                "activity_limit", "How many activity items.", default=10, least=1, most=ACTIVITY_MAX
            )
        ],
        responses={200: DashboardEnvelope, **error_responses(400, *ORG_SCOPED_ERRORS)},
    )
    def get(self, request: Request, org_id: str) -> Response:
        limit = _limit(request, "activity_limit", FIRST_PAINT_ACTIVITY_DEFAULT)
        return answer_response(self.organization, dashboard_answer(self.organization, activity_limit=limit))


class DashboardSummaryView(ProfileView):
    @extend_schema(
        operation_id="dashboard_summary",
        summary="Headline numbers: patients, today's and this week's appointments, profiles, value at "
        "risk, the last sync, the KPIs of the last 30 days beside the 30 before",
        responses={200: DashboardSummaryEnvelope, **error_responses(*ORG_SCOPED_ERRORS)},
    )
    def get(self, request: Request, org_id: str) -> Response:
        return answer_response(self.organization, dashboard_summary_answer(self.organization))


class DashboardActivityView(ProfileView):
    @extend_schema(
        operation_id="dashboard_activity",
        summary="What happened, newest first: sync runs, bookings made, cancellations, missed appointments",
        parameters=[
            integer_parameter(
                "limit", "How many items.", default=ACTIVITY_DEFAULT, least=1, most=ACTIVITY_MAX
            ),
            OpenApiParameter(
                "before",
                {
                    "anyOf": [
                        {"type": "string", "pattern": dashboard.CURSOR_PATTERN},
                        {"type": "string", "format": "date-time"},
                    ]
                },
                description="The `next_before` of the previous page, or an ISO 8601 date-time with a UTC "
                "offset (events strictly before it).",
            ),
        ],
        responses={200: DashboardActivityEnvelope, **error_responses(400, *ORG_SCOPED_ERRORS)},
    )
    def get(self, request: Request, org_id: str) -> Response:
        limit = _limit(request, "limit", ACTIVITY_DEFAULT)
        before = _before(request)
        return answer_response(
            self.organization, dashboard_activity_answer(self.organization, limit=limit, before=before)
        )


class DashboardAnalyticsView(ProfileView):
    @extend_schema(
        operation_id="dashboard_analytics",
        summary="The clinic KPIs of the period ending today (clinic-local) beside the period before",
        parameters=[TIMEFRAME_PARAMETER],
        responses={200: DashboardAnalyticsEnvelope, **error_responses(400, *ORG_SCOPED_ERRORS)},
    )
    def get(self, request: Request, org_id: str) -> Response:
        answer = dashboard_analytics_answer(self.organization, timeframe=_timeframe(request))
        return answer_response(self.organization, answer)


class DashboardChartsView(ProfileView):
    @extend_schema(
        operation_id="dashboard_charts",
        summary="Daily series over the period ending today: bookings, attended, cancellations, DNAs, "
        "revenue, new patients, reactivations",
        parameters=[TIMEFRAME_PARAMETER],
        responses={200: DashboardChartsEnvelope, **error_responses(400, *ORG_SCOPED_ERRORS)},
    )
    def get(self, request: Request, org_id: str) -> Response:
        answer = dashboard_charts_answer(self.organization, timeframe=_timeframe(request))
        return answer_response(self.organization, answer)
