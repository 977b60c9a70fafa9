"""The dashboard endpoints on the hand-built clinic of the re-engagement tests, plus a patient
seen today and this week (in Sydney, not UTC) and sync runs: values, the activity feed's order
and paging, bounds, tenants, query counts and the cache following the data."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from model_bakery import baker

from clinics.models import PmsConnection
from clinics.rls import tenant_scope
from clinics.services import pms_connection_set
from conftest import data_queries
from patients.api import dashboard as views
from patients.kpis import clinic_kpi_comparison, clinic_kpi_series
from patients.models import Appointment, AppointmentType, Patient
from patients.profiles import profiles_refresh_all
from patients.profiles.cache import profiles_cache_bump
from patients.tests.test_api_reengagement import _appointment, _patient, build_clinic
from sync.models import SyncRun

pytestmark = pytest.mark.django_db


def body(response: Any) -> dict[str, Any]:
    return json.loads(response.content)


def url(org: Any, rest: str = "") -> str:
    return f"/api/v1/dashboard/{org.pk}{rest}"


def get(api: Any, token: str, org: Any, rest: str = "") -> dict[str, Any]:
    response = api("get", url(org, rest), token)
    assert response.status_code == 200, response.content
    answer = body(response)
    assert answer["success"] is True and answer["organization_id"] == org.pk and answer["timestamp"]
    return answer


def local(org: Any, day: Any, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=org.tzinfo).astimezone(UTC)


@pytest.fixture
def clinic(world: Any) -> dict[str, Any]:
    """The re-engagement clinic (32 patients in org A, one in org B), and in org A:
    - Tess, seen around today in Sydney: attended at 00:30 today (00:30 local is the day before
      in UTC), attended at 23:30 yesterday, missed 00:45 today, cancelled 00:50 today two hours
      before it (late), booked later today, tomorrow at 00:15 and next Monday; a class today (an
      excluded type) and an archived appointment today, neither counted (before 1 am there, the
      three visits of today are earlier, in the minutes since midnight);
    - a Cliniko connection last synced 61 minutes ago and three runs: completed an hour ago,
      failed 30 minutes ago, running since 5 minutes ago (the newest);
    - org B: a booking made 10 minutes ago and a run of its own, never shown to org A."""
    built = build_clinic(world)
    org, now = world.org_a, timezone.now()
    org.retention_settings = {"excluded_appointment_type_ids": ["class"]}
    org.save()
    today = now.astimezone(org.tzinfo).date()
    monday = today - timedelta(days=today.weekday())
    kind = baker.make(AppointmentType, organization=org, pms="cliniko", external_id="t2", name="Initial")
    group = baker.make(AppointmentType, organization=org, pms="cliniko", external_id="class", name="Pilates")
    tess = _patient(org, "tess", "Tess", last_name="Today")
    later_today = now + (local(org, today + timedelta(days=1), 0) - now) / 2

    def visit(key: str, starts_at: datetime, **fields: Any) -> Appointment:
        return _appointment(org, tess, key, starts_at, **{"appointment_type": kind, **fields})

    # Minutes past midnight, squeezed into the minutes gone by when the tests run before 1 am
    # there: today's visits so far must be in the past (a DNA not yet due is no DNA).
    midnight = local(org, today, 0)
    gone = min(now - midnight, timedelta(hours=1))

    def past_midnight(minutes: int) -> datetime:
        return midnight + gone * minutes / 60

    made = {
        "attended": visit("t-attended", past_midnight(30), patient_arrived=True),
        "yesterday": visit(
            "t-yesterday", local(org, today - timedelta(days=1), 23, 30), patient_arrived=True
        ),
        "dna": visit("t-dna", past_midnight(45), did_not_arrive=True),
        "cancelled": visit(
            "t-cancelled",
            past_midnight(50),
            cancelled_at=past_midnight(50) - timedelta(hours=2),
        ),
        "later": visit("t-later", later_today),
        "tomorrow": visit("t-tomorrow", local(org, today + timedelta(days=1), 0, 15)),
        "next_week": visit("t-next-week", local(org, monday + timedelta(days=7), 0, 15)),
        "class": visit("t-class", later_today, appointment_type=group),
        "archived": visit("t-archived", later_today, archived_at=now),
    }
    with tenant_scope(org):
        connection = pms_connection_set(org, kind="cliniko", api_key="dashboard0123456789-au1")
    PmsConnection.objects.filter(pk=connection.pk).update(last_successful_sync_at=now - timedelta(minutes=61))
    stats = {
        "patient": {
            "fetched": 5,
            "created": 2,
            "updated": 3,
            "unchanged": 0,
            "archived": 0,
            "deleted": 0,
            "failed": 0,
        },
        "appointment": {
            "fetched": 9,
            "created": 4,
            "updated": 1,
            "unchanged": 3,
            "archived": 1,
            "deleted": 0,
            "failed": 1,
        },
    }
    runs = {
        "completed": baker.make(
            SyncRun,
            organization=org,
            connection=connection,
            pms="cliniko",
            trigger="schedule",
            status="completed",
            started_at=now - timedelta(minutes=62),
            finished_at=now - timedelta(minutes=60),
            stats=stats,
        ),
        "failed": baker.make(
            SyncRun,
            organization=org,
            connection=connection,
            pms="cliniko",
            trigger="api",
            status="failed",
            started_at=now - timedelta(minutes=31),
            finished_at=now - timedelta(minutes=30),
            error_code="PMS_AUTH_FAILED",
            error_message="Cliniko said: key dashboard0123456789 refused",
        ),
        "running": baker.make(
            SyncRun,
            organization=org,
            connection=connection,
            pms="cliniko",
            trigger="schedule",
            status="running",
            started_at=now - timedelta(minutes=5),
        ),
    }
    other = built["other"]
    foreign = _appointment(
        world.org_b, other, "b-new", now + timedelta(days=1), pms_created_at=now - timedelta(minutes=10)
    )
    with tenant_scope(world.org_b):
        b_connection = pms_connection_set(world.org_b, kind="cliniko", api_key="bayside0123456789-au1")
    baker.make(
        SyncRun,
        organization=world.org_b,
        connection=b_connection,
        pms="cliniko",
        status="failed",
        started_at=now - timedelta(minutes=2),
        finished_at=now - timedelta(minutes=1),
    )
    for tenant in (org, world.org_b):
        with tenant_scope(tenant):
            profiles_refresh_all(tenant)
    return {**built, "tess": tess, "tess_visits": made, "runs": runs, "foreign": foreign, "today": today}


# --- the summary -------------------------------------------------------------------------------
def expected_week(today: Any, *, booked_day: Any) -> dict[str, Any]:
    """Today's four, then yesterday's visit unless today is Monday, and tomorrow's and Bo's
    booking in three days when they fall before Sunday ends."""
    week = {"appointments": 4, "attended": 1, "booked": 1, "dna": 1, "cancelled": 1, "late_cancelled": 1}
    sunday = today + timedelta(days=6 - today.weekday())
    later = [today + timedelta(days=1), booked_day]
    booked = sum(1 for day in later if day <= sunday)
    attended = 1 if today.weekday() > 0 else 0
    return {
        **week,
        "appointments": week["appointments"] + attended + booked,
        "attended": week["attended"] + attended,
        "booked": week["booked"] + booked,
    }


def test_summary_counts_today_and_this_week_in_the_clinics_calendar(world, clinic, api, token_for):
    answer = get(api, token_for(world.org_a), world.org_a, "/summary")
    summary, today = answer["summary"], clinic["today"]
    assert summary["patients"] == {"total": 33, "active": 33, "with_upcoming_appointment": 2}
    appointments = summary["appointments"]
    assert appointments["time_zone"] == "Australia/Sydney"
    assert appointments["today"] == {
        "date": today.isoformat(),
        "appointments": 4,
        "attended": 1,
        "booked": 1,
        "dna": 1,
        "cancelled": 1,
        "late_cancelled": 1,
    }
    monday = today - timedelta(days=today.weekday())
    booked_day = (
        Appointment.objects.get(external_id="booked-next").starts_at.astimezone(world.org_a.tzinfo).date()
    )
    assert appointments["this_week"] == {
        "first_day": monday.isoformat(),
        "last_day": (monday + timedelta(days=6)).isoformat(),
        **expected_week(today, booked_day=booked_day),
    }
    assert answer["data_as_of"] is not None


def test_summary_reuses_the_profile_summary_and_the_30_day_kpis(world, clinic, api, token_for):
    token = token_for(world.org_a)
    summary = get(api, token, world.org_a, "/summary")["summary"]
    profiles = api("get", f"/api/v1/reengagement/{world.org_a.pk}/dashboard-summary", token)
    assert summary["profiles"] == body(profiles)["summary"] and summary["profiles"]["total_patients"] == 33
    analytics = get(api, token, world.org_a, "/analytics?timeframe=30d")["analytics"]
    assert summary["kpis"] == {k: v for k, v in analytics.items() if k != "definitions"}


def test_summary_says_how_the_last_sync_went(world, clinic, api, token_for):
    last = get(api, token_for(world.org_a), world.org_a, "/summary")["last_sync"]
    running = clinic["runs"]["running"]
    assert last["run_id"] == running.pk and last["status"] == "running" and last["finished_at"] is None
    assert last["pms"] == "cliniko" and last["trigger"] == "schedule" and last["error_code"] is None
    assert last["data_age_minutes"] == 61 and last["last_successful_sync_at"] is not None


def test_the_last_sync_is_read_live_not_from_the_data_cache(world, clinic, api, token_for, monkeypatch):
    import time as clock

    monkeypatch.setattr(views, "LIVE_SYNC_SECONDS", 1)
    token = token_for(world.org_a)
    assert get(api, token, world.org_a, "/summary")["last_sync"]["status"] == "running"
    SyncRun.objects.filter(pk=clinic["runs"]["running"].pk).update(
        status="completed", finished_at=timezone.now()
    )
    PmsConnection.objects.filter(organization=world.org_a).update(last_successful_sync_at=timezone.now())
    # Shared for a moment between the screens' requests...
    assert get(api, token, world.org_a, "/summary")["last_sync"]["status"] == "running"
    clock.sleep(1.2)
    # ...then read again, though the data version has not moved.
    last = get(api, token, world.org_a, "/summary")["last_sync"]
    assert last["status"] == "completed" and last["data_age_minutes"] == 0


def test_an_organization_never_synced(world, api, token_for):
    answer = get(api, token_for(world.org_a), world.org_a, "/summary")
    assert answer["last_sync"] == dict.fromkeys(views.DashboardLastSyncSerializer().fields)
    assert answer["summary"]["patients"] == {"total": 0, "active": 0, "with_upcoming_appointment": 0}
    assert answer["summary"]["appointments"]["today"]["appointments"] == 0


# --- the first paint ---------------------------------------------------------------------------
def test_the_first_paint_is_the_summary_and_the_newest_activity(world, clinic, api, token_for):
    token = token_for(world.org_a)
    first = get(api, token, world.org_a)
    summary = get(api, token, world.org_a, "/summary")
    activity = get(api, token, world.org_a, "/activity?limit=10")
    assert first["summary"] == summary["summary"] and first["last_sync"] == summary["last_sync"]
    assert first["activity"] == activity["activity"] and first["count"] == 10 and first["limit"] == 10
    assert first["next_before"] == activity["next_before"] and first["data_as_of"] == summary["data_as_of"]
    assert get(api, token, world.org_a, "?activity_limit=3")["count"] == 3


def test_the_first_paint_is_shared_for_a_moment_and_follows_the_data_at_once(
    world, clinic, api, token_for, monkeypatch
):
    import time as clock

    monkeypatch.setattr(views, "LIVE_SYNC_SECONDS", 1)
    token, org, running = token_for(world.org_a), world.org_a, clinic["runs"]["running"]

    def the_run(answer: dict[str, Any]) -> str:
        """What the activity says of the running run (the newest event, unless the tests run
        in the first minutes of the day in Sydney, where Tess's visits are newer)."""
        (item,) = [item for item in answer["activity"] if item["run_id"] == running.pk]
        return item["type"]

    first = get(api, token, org)
    assert first["last_sync"]["status"] == "running" and the_run(first) == "sync_started"
    SyncRun.objects.filter(pk=running.pk).update(status="completed", finished_at=timezone.now())
    # The same answer to every screen asking within the moment...
    again = get(api, token, org)
    assert again["last_sync"] == first["last_sync"] and again["activity"] == first["activity"]
    assert again["timestamp"] >= first["timestamp"]  # the envelope is the request's own
    # ...but new data shows at once: the whole answer is made again, its live parts read now.
    _patient(org, "newcomer", "Nia")
    profiles_cache_bump(org.pk)
    moved = get(api, token, org)
    assert moved["summary"]["patients"]["total"] == first["summary"]["patients"]["total"] + 1
    assert moved["last_sync"]["status"] == "completed" and the_run(moved) == "sync_completed"
    # And without a data change, once the moment has passed.
    SyncRun.objects.filter(pk=running.pk).update(status="failed", error_code="PMS_AUTH_FAILED")
    clock.sleep(1.2)
    assert get(api, token, org)["last_sync"]["status"] == "failed"


# --- activity ----------------------------------------------------------------------------------
def _moment(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["occurred_at"].replace("Z", "+00:00"))


def _is_newest_first(items: list[dict[str, Any]]) -> bool:
    moments = [_moment(item) for item in items]
    return moments == sorted(moments, reverse=True)


def test_activity_is_the_organizations_events_newest_first(world, clinic, api, token_for):
    answer = get(api, token_for(world.org_a), world.org_a, "/activity?limit=100")
    items, runs = answer["activity"], clinic["runs"]
    assert _is_newest_first(items) and answer["count"] == len(items) and answer["next_before"] is None
    # The runs lie minutes back and Tess's visits around the clinic's midnight: which come first
    # depends on the hour the test runs (at 01:00 in Sydney the missed visit is 15 minutes old).
    syncs = [item for item in items if item["type"].startswith("sync_")]
    assert [(i["type"], i["run_id"]) for i in syncs] == [
        ("sync_started", runs["running"].pk),
        ("sync_failed", runs["failed"].pk),
        ("sync_completed", runs["completed"].pk),
    ]
    assert syncs[0]["description"] == "Cliniko sync started (incremental)."
    failed = syncs[1]
    assert failed["description"] == "Cliniko sync failed in 60 s (PMS_AUTH_FAILED)."
    assert "refused" not in json.dumps(answer) and "dashboard0123456789" not in json.dumps(answer)
    completed = syncs[2]
    assert completed["sync"]["counts"] == {
        "fetched": 14,
        "created": 6,
        "updated": 4,
        "archived": 1,
        "deleted": 0,
        "failed": 1,
    }
    assert completed["description"] == (
        "Cliniko sync completed in 2 min: 6 created, 4 updated, 1 archived, 1 could not be stored."
    )
    by_type: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        if item not in syncs:
            by_type.setdefault(item["type"], []).append(item)
    assert set(by_type) == {"booking", "late_cancellation", "dna"}
    booked = clinic["booked"]
    (booking,) = by_type["booking"][:1]
    assert booking["patient_id"] == booked.pk and booking["patient_name"] == "Bo Same"
    assert booking["appointment_id"] == Appointment.objects.get(external_id="booked-next").pk
    assert booking["description"].startswith("Bo Same booked Standard with Ana for ")
    assert booking["appointment"]["appointment_type"] == "Standard" and booking["run_id"] is None
    assert len(by_type["booking"]) == 3  # booked-next and the two missed ones, made days before
    (cancelled,) = by_type["late_cancellation"]
    assert cancelled["appointment_id"] == clinic["tess_visits"]["cancelled"].pk
    assert cancelled["description"].startswith("Tess Today cancelled Initial on ")
    assert cancelled["description"].endswith(", less than 24 h before it.")
    dnas = by_type["dna"]
    assert {d["appointment_id"] for d in dnas} == {
        clinic["tess_visits"]["dna"].pk,
        *Appointment.objects.filter(external_id__in=["dna20", "dna30"]).values_list("pk", flat=True),
    }
    assert all(
        d["description"].startswith(("Cris Same did not arrive", "Tess Today did not arrive")) for d in dnas
    )
    assert set(items[0]) == set(views.DashboardActivityItemSerializer().fields)


def test_activity_never_shows_another_organization(world, clinic, api, token_for):
    items = get(api, token_for(world.org_a), world.org_a, "/activity?limit=100")["activity"]
    assert clinic["foreign"].pk not in {i["appointment_id"] for i in items}
    assert set(SyncRun.objects.filter(organization=world.org_b).values_list("pk", flat=True)).isdisjoint(
        i["run_id"] for i in items
    )
    assert clinic["other"].pk not in {i["patient_id"] for i in items}
    theirs = get(api, token_for(world.org_b, user="user_bob"), world.org_b, "/activity?limit=100")["activity"]
    assert [i["type"] for i in theirs] == ["sync_failed", "booking"]
    assert theirs[1]["appointment_id"] == clinic["foreign"].pk


def test_activity_pages_never_repeat_or_skip_even_at_one_instant(world, clinic, api, token_for):
    """Three bookings, a cancellation and a run all at one instant, split across pages."""
    org, token, moment = world.org_a, token_for(world.org_a), timezone.now() - timedelta(minutes=20)
    tess = clinic["tess"]
    for n in range(3):
        _appointment(org, tess, f"tie{n}", moment + timedelta(days=2), pms_created_at=moment)
    _appointment(org, tess, "tie-cancel", moment + timedelta(days=3), cancelled_at=moment)
    SyncRun.objects.filter(pk=clinic["runs"]["failed"].pk).update(finished_at=moment)
    with tenant_scope(org):
        profiles_refresh_all(org)
    whole = get(api, token, org, "/activity?limit=100")["activity"]
    tied = [i for i in whole if _moment(i) == moment]
    assert [i["type"] for i in tied] == ["sync_failed", "booking", "booking", "booking", "cancellation"]
    assert [i["appointment_id"] for i in tied[1:4]] == sorted(
        (i["appointment_id"] for i in tied[1:4]), reverse=True
    )
    for size in (1, 2, 3):
        seen, cursor = [], None
        while True:
            page = get(api, token, org, f"/activity?limit={size}" + (f"&before={cursor}" if cursor else ""))
            seen += page["activity"]
            assert page["count"] <= size
            cursor = page["next_before"]
            if cursor is None:
                break
        assert seen == whole


def test_activity_before_a_moment(world, clinic, api, token_for):
    token, runs = token_for(world.org_a), clinic["runs"]
    cut = runs["failed"].finished_at
    query = f"/activity?limit=100&before={cut.isoformat().replace('+', '%2B')}"
    items = get(api, token, world.org_a, query)["activity"]
    whole = get(api, token, world.org_a, "/activity?limit=100")["activity"]
    # Tess's visits lie around the clinic's midnight, the runs minutes back: how many events
    # come before the cut depends on the hour the test runs, but never which ones.
    assert items == [i for i in whole if _moment(i) < cut] and len(items) >= 6
    run_ids = [i["run_id"] for i in items]
    assert runs["completed"].pk in run_ids and runs["failed"].pk not in run_ids  # not strictly before


def test_activity_limit_defaults_to_twenty(world, clinic, api, token_for):
    answer = get(api, token_for(world.org_a), world.org_a, "/activity")
    assert answer["limit"] == 20 and answer["count"] == 10 and answer["next_before"] is None


# --- analytics and charts ----------------------------------------------------------------------
@pytest.mark.parametrize(("timeframe", "days"), [("7d", 7), ("30d", 30), ("90d", 90), (None, 30)])
def test_analytics_is_the_kpi_comparison_of_the_period_ending_today(
    world, clinic, api, token_for, timeframe, days
):
    query = f"?timeframe={timeframe}" if timeframe else ""
    analytics = get(api, token_for(world.org_a), world.org_a, f"/analytics{query}")["analytics"]
    today = clinic["today"]
    start = today - timedelta(days=days - 1)
    assert analytics["timeframe"] == (timeframe or "30d") and analytics["time_zone"] == "Australia/Sydney"
    assert analytics["period"] == {"from": start.isoformat(), "to": today.isoformat(), "days": days}
    assert analytics["previous_period"]["to"] == (start - timedelta(days=1)).isoformat()
    with tenant_scope(world.org_a):
        expected = clinic_kpi_comparison(world.org_a, start=start, end=today)
    for name in ("period", "previous_period", "current", "previous", "changes"):
        assert analytics[name] == json.loads(json.dumps(expected[name])), name
    assert set(analytics["current"]) == set(views.DashboardKpisSerializer().fields)
    assert set(analytics) == set(views.DashboardAnalyticsSerializer().fields)
    assert analytics["definitions"]["bookings"]


def test_analytics_counts_the_bookings_made_in_each_period(world, clinic, api, token_for):
    analytics = get(api, token_for(world.org_a), world.org_a, "/analytics?timeframe=30d")["analytics"]
    # Made 2 and 25 days ago (booked-next, dna20), then 35 days ago (dna30).
    assert analytics["current"]["bookings"] == 2 and analytics["previous"]["bookings"] == 1
    assert analytics["changes"]["bookings"] == {"change": 1, "relative_change": 1.0}


def test_a_year_is_the_twelve_months_since_this_date_last_year(world, clinic, api, token_for):
    analytics = get(api, token_for(world.org_a), world.org_a, "/analytics?timeframe=1y")["analytics"]
    today = clinic["today"]
    assert analytics["period"]["to"] == today.isoformat()
    assert analytics["period"]["days"] in (365, 366)
    assert views._year_before(date(2028, 2, 29)).isoformat() == "2027-02-28"


@pytest.mark.parametrize(("timeframe", "days"), [("7d", 7), ("30d", 30), ("1y", None)])
def test_charts_have_a_point_a_day_zeros_kept(world, clinic, api, token_for, timeframe, days):
    charts = get(api, token_for(world.org_a), world.org_a, f"/charts?timeframe={timeframe}")["charts"]
    series, today = charts["series"], clinic["today"]
    days = days or charts["period"]["days"]
    assert len(series) == days == charts["period"]["days"] and series[-1]["date"] == today.isoformat()
    dates = [datetime.fromisoformat(p["date"]).date() for p in series]
    assert dates == [today - timedelta(days=days - 1 - n) for n in range(days)]
    assert set(series[0]) == set(views.DashboardChartPointSerializer().fields)
    assert charts["currency"] == "AUD" and charts["time_zone"] == "Australia/Sydney"
    with tenant_scope(world.org_a):
        expected = clinic_kpi_series(world.org_a, start=dates[0], end=today)
    assert [p["bookings"] for p in series] == [p["bookings"] for p in expected]


def test_charts_count_each_booking_on_its_local_day(world, clinic, api, token_for):
    series = get(api, token_for(world.org_a), world.org_a, "/charts?timeframe=30d")["charts"]["series"]
    assert sum(p["bookings"] for p in series) == 2
    made = (
        Appointment.objects.get(external_id="booked-next")
        .pms_created_at.astimezone(world.org_a.tzinfo)
        .date()
    )
    assert next(p for p in series if p["date"] == made.isoformat())["bookings"] >= 1


# --- bad parameters, tenants, authentication -------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("", "activity_limit=0"),
        ("", "activity_limit=101"),
        ("", "activity_limit=ten"),
        ("", "activity_limit=-1"),
        ("/activity", "limit=0"),
        ("/activity", "limit=101"),
        ("/activity", "limit=1.5"),
        ("/activity", "before=yesterday"),
        ("/activity", "before=2026-01-01"),
        ("/activity", "before=123.booking"),
        ("/activity", "before=123.visit.4"),
        ("/activity", "before=1.booking.99999999999999999999"),
        ("/activity", "before="),
        ("/analytics", "timeframe=7"),
        ("/analytics", "timeframe=last_7_days"),
        ("/analytics", "timeframe=2y"),
        ("/analytics", "timeframe="),
        ("/charts", "timeframe=30D"),
        ("/charts", "timeframe=all"),
    ],
)
def test_bad_parameters_are_validation_errors(world, clinic, api, token_for, path, query):
    response = api("get", url(world.org_a, f"{path}?{query}"), token_for(world.org_a))
    assert response.status_code == 400, response.content
    error = body(response)["error"]
    assert error["code"] == "VALIDATION_ERROR" and set(error["details"]) == {query.split("=")[0]}


ENDPOINTS = ["", "/summary", "/activity", "/analytics", "/charts"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_without_credentials_nothing_is_answered(world, clinic, api, path):
    response = api("get", url(world.org_a, path))
    assert response.status_code == 401 and body(response)["error"]["code"] == "AUTHENTICATION_REQUIRED"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_another_organization_is_refused(world, clinic, api, token_for, path):
    response = api("get", url(world.org_b, path), token_for(world.org_a))
    assert response.status_code == 403 and body(response)["error"]["code"] == "ORG_ACCESS_DENIED"
    assert api("get", url(world.org_b, path), token_for(world.org_b, user="user_bob")).status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_mismatched_organization_header_is_refused(world, clinic, api, token_for, path):
    response = api(
        "get",
        url(world.org_a, path),
        token_for(world.org_a),
        headers={"HTTP_X_ORGANIZATION_ID": world.org_b.pk},
    )
    assert response.status_code == 403 and body(response)["error"]["code"] == "ORG_ACCESS_DENIED"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_read_only_members_may_read(world, clinic, api, token_for, path):
    viewer = token_for(world.org_a, role="org:viewer", user="user_viola")
    assert api("get", url(world.org_a, path), viewer).status_code == 200


def test_an_unknown_organization_is_not_found(world, api, token_for):
    response = api("get", "/api/v1/dashboard/not-an-org/summary", token_for(world.org_a))
    assert response.status_code == 404 and body(response)["error"]["code"] == "NOT_FOUND"


# --- query counts and the cache -------------------------------------------------------------------
def _queries(api: Any, token: str, org: Any, rest: str) -> int:
    with CaptureQueriesContext(db) as captured:
        get(api, token, org, rest)
    return len(data_queries(captured))


def _more_data(org: Any, tess: Patient, n: int) -> None:
    now = timezone.now()
    for k in range(n):
        _appointment(
            org,
            tess,
            f"more{k}",
            now - timedelta(days=k % 20),
            pms_created_at=now - timedelta(days=k % 25),
            did_not_arrive=k % 3 == 0,
            cancelled_at=now - timedelta(days=30) if k % 5 == 0 else None,
        )
        baker.make(
            SyncRun,
            organization=org,
            connection=PmsConnection.objects.get(organization=org),
            pms="cliniko",
            status="completed",
            started_at=now - timedelta(days=k),
            finished_at=now - timedelta(days=k),
        )
    profiles_cache_bump(org.pk)


@pytest.mark.parametrize(
    "rest", ["?activity_limit={n}", "/activity?limit={n}", "/summary", "/analytics", "/charts"]
)
def test_queries_do_not_grow_with_the_data_or_the_page(
    world, clinic, api, token_for, settings, rest, monkeypatch
):
    from clinics.auth import authentication

    settings.ANSWER_CACHE_SECONDS = 0  # every request computes its answer
    # ...and reads the live sync state: shared for 2 s, it would be cached in one measurement and
    # not the other whenever they lie more than that apart.
    monkeypatch.setattr(views, "LIVE_SYNC_SECONDS", 0)
    # On a loaded machine the two measurements may lie over a minute apart: the token's user must
    # not be mirrored again in the second one only.
    monkeypatch.setattr(authentication, "MIRROR_SECONDS", 3600.0)
    token = token_for(world.org_a)
    get(api, token, world.org_a, "/summary")  # the token's first use mirrors its user
    small = _queries(api, token, world.org_a, rest.format(n=2))
    _more_data(world.org_a, clinic["tess"], 60)
    large = _queries(api, token, world.org_a, rest.format(n=50))
    # Uncached, the first paint reads the caller, the summary's parts (patients, appointments,
    # profiles, the KPI statement), three activity sources and the sync runs: about 30.
    assert small == large <= 30


def test_cached_answers_are_served_until_the_data_version_moves(world, clinic, api, token_for):
    token, org = token_for(world.org_a), world.org_a
    first = get(api, token, org, "/summary")["summary"]
    get(api, token, org, "/activity")
    with CaptureQueriesContext(db) as cached:
        again = get(api, token, org, "/summary")
    assert again["summary"] == first
    # Cached: the request reads only the caller, its membership, and the live last sync.
    assert len(data_queries(cached)) <= 6
    new = _patient(org, "newcomer", "Nia")
    _appointment(org, new, "nia-1", timezone.now() + timedelta(days=1), pms_created_at=timezone.now())
    assert get(api, token, org, "/summary")["summary"]["patients"]["total"] == 33
    activity = get(api, token, org, "/activity")["activity"]
    assert new.pk not in {i["patient_id"] for i in activity}
    profiles_cache_bump(org.pk)  # what a sync's profile refresh does once it commits
    assert get(api, token, org, "/summary")["summary"]["patients"]["total"] == 34
    activity = get(api, token, org, "/activity")["activity"]
    assert [i["patient_id"] for i in activity if i["type"] == "booking"][0] == new.pk


def test_a_profile_refresh_moves_the_version(
    world, clinic, api, token_for, django_capture_on_commit_callbacks
):
    token, org = token_for(world.org_a), world.org_a
    assert get(api, token, org, "/summary")["summary"]["profiles"]["total_patients"] == 33
    _patient(org, "late", "Lou")
    with django_capture_on_commit_callbacks(execute=True), tenant_scope(org):
        profiles_refresh_all(org)
    assert get(api, token, org, "/summary")["summary"]["profiles"]["total_patients"] == 34


def test_the_answer_functions_warm_what_the_views_send(world, clinic, api, token_for):
    org = world.org_a
    with tenant_scope(org):
        warmed = {
            "dashboard": views.dashboard_answer(org),
            "summary": views.dashboard_summary_answer(org),
            "activity": views.dashboard_activity_answer(org),
            "analytics": views.dashboard_analytics_answer(org),
            "charts": views.dashboard_charts_answer(org),
        }
    assert {name: sorted(json.loads(answer)) for name, answer in warmed.items()} == {
        "dashboard": ["activity", "count", "data_as_of", "last_sync", "limit", "next_before", "summary"],
        "summary": ["data_as_of", "last_sync", "summary"],
        "activity": ["activity", "count", "data_as_of", "limit", "next_before"],
        "analytics": ["analytics", "data_as_of"],
        "charts": ["charts", "data_as_of"],
    }
    token = token_for(org)
    with CaptureQueriesContext(db) as captured:
        get(api, token, org, "/charts")
    assert not any("patients_appointment" in q["sql"] for q in captured.captured_queries)


def test_what_is_sent_is_what_the_schema_declares(world, clinic, api, token_for):
    token = token_for(world.org_a)
    summary = get(api, token, world.org_a, "/summary")
    assert set(summary) == set(views.DashboardSummaryEnvelope().fields)
    assert set(summary["summary"]) == set(views.DashboardSummarySerializer().fields)
    assert set(summary["summary"]["patients"]) == set(views.DashboardPatientsSerializer().fields)
    assert set(summary["summary"]["kpis"]) == set(views.DashboardKpiComparisonSerializer().fields)
    assert set(summary["last_sync"]) == set(views.DashboardLastSyncSerializer().fields)
    assert set(get(api, token, world.org_a)) == set(views.DashboardEnvelope().fields)
    assert set(get(api, token, world.org_a, "/activity")) == set(views.DashboardActivityEnvelope().fields)
    assert set(get(api, token, world.org_a, "/analytics")) == set(views.DashboardAnalyticsEnvelope().fields)
    charts = get(api, token, world.org_a, "/charts")
    assert set(charts) == set(views.DashboardChartsEnvelope().fields)
    assert set(charts["charts"]) == set(views.DashboardChartsSerializer().fields)


def test_a_cursor_beyond_any_moment_or_id_means_from_the_newest(world, clinic, api, token_for):
    token = token_for(world.org_a)
    whole = get(api, token, world.org_a, "/activity?limit=100")["activity"]
    beyond = get(
        api, token, world.org_a, "/activity?limit=100&before=999999999999999999.sync.9999999999999999999"
    )
    assert beyond["activity"] == whole
    before_year_one = get(api, token, world.org_a, "/activity?before=-999999999999999999.dna.1")
    assert before_year_one["activity"] == [] and before_year_one["next_before"] is None
