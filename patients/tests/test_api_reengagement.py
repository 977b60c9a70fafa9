"""The re-engagement endpoints on a hand-built clinic whose answers are known: shapes and values,
filters, bounds, stable paging with ties, ids, tenants, roles and query counts."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from model_bakery import baker

from clinics.models import Location
from clinics.rls import tenant_scope
from conftest import data_queries
from patients.models import Appointment, AppointmentType, Invoice, Patient, Practitioner
from patients.profiles import profiles_refresh_all

pytestmark = pytest.mark.django_db

ALIKE = 28  # lapsing patients with the same figures: every ordering ties among them


def body(response: Any) -> dict[str, Any]:
    return json.loads(response.content)


def _appointment(org: Any, who: Patient, key: str, starts_at: Any, **fields: Any) -> Appointment:
    return baker.make(
        Appointment,
        organization=org,
        pms="cliniko",
        external_id=key,
        patient=who,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=30),
        **fields,
    )


def _patient(org: Any, key: str, first: str, **fields: Any) -> Patient:
    fields = {
        "last_name": "Same",
        "email": f"{key}@example.com",
        "phones_e164": [],
        "mobile_e164": "",
        "last_synced_at": timezone.now(),
        **fields,
    }
    return baker.make(Patient, organization=org, pms="cliniko", external_id=key, first_name=first, **fields)


def on_day(org: Any, days: int) -> datetime:
    """Noon on the clinic's calendar `days` from today (negative: ago). Counted in the clinic's
    days whatever the hour the tests run at: `now - timedelta(days=100)` is 101 days ago in
    Sydney in the hour after its midnight when daylight saving began in between."""
    today = timezone.now().astimezone(org.tzinfo).date()
    return datetime.combine(today + timedelta(days=days), time(12), tzinfo=org.tzinfo)


def _visits(org: Any, who: Patient, key: str, days_ago: list[int], **fields: Any) -> None:
    for n, days in enumerate(days_ago):
        _appointment(org, who, f"{key}-{n}", on_day(org, -days), **fields)


def build_clinic(world: Any) -> dict[str, Any]:
    """Org A (32 patients):
    - jane: lapsing (last of three fortnightly visits 100 days ago, nothing booked), high risk (60),
      with $300 of invoices: the most value at risk among the high-risk;
    - 28 alike: the same as jane without invoices (ties everywhere);
    - critical: the same rhythm, last visit 70 days ago, then two missed appointments: 80 points;
    - never: no appointment at all (never converted, medium risk, priority 3);
    - booked: jane's rhythm with the next visit booked (made 2 days ago): active, low, priority 5.
    Org B: one lapsing patient of its own, named like jane."""
    org, now = world.org_a, timezone.now()
    ana = baker.make(Practitioner, organization=org, pms="cliniko", external_id="pr1", first_name="Ana")
    site = baker.make(Location, organization=org, pms="cliniko", external_id="loc1", name="Harbour")
    kind = baker.make(AppointmentType, organization=org, pms="cliniko", external_id="t1", name="Standard")
    where = {"practitioner": ana, "location": site, "appointment_type": kind}
    jane = _patient(
        org, "jane", "Jane", last_name="Citizen", mobile_e164="+61412345678", phones_e164=["+61412345678"]
    )
    alike = [_patient(org, f"lee{n}", f"Lee{n:02d}") for n in range(ALIKE)]
    critical = _patient(org, "crit", "Cris")
    never = _patient(org, "never", "Neve")
    booked = _patient(org, "booked", "Bo")
    for who in (jane, *alike, booked):
        _visits(org, who, who.external_id, [100, 114, 128], **where)
    _visits(org, critical, "crit", [70, 84, 98], **where)
    for days in (20, 30):  # each booked after the one before was missed: no reschedule
        made, missed = on_day(org, -days - 5), on_day(org, -days)
        _appointment(org, critical, f"dna{days}", missed, pms_created_at=made, did_not_arrive=True, **where)
    future = on_day(org, 3)
    _appointment(org, booked, "booked-next", future, pms_created_at=now - timedelta(days=2), **where)
    for n in range(3):
        baker.make(
            Invoice, organization=org, pms="cliniko", external_id=f"inv{n}", patient=jane, total_amount=100
        )
    other = _patient(world.org_b, "b1", "Jane", last_name="Citizen")
    _visits(world.org_b, other, "b1", [100, 114, 128])
    for tenant in (org, world.org_b):
        with tenant_scope(tenant):
            profiles_refresh_all(tenant)
    return {
        "jane": jane,
        "alike": alike,
        "critical": critical,
        "never": never,
        "booked": booked,
        "other": other,
        "practitioner": ana,
        "ours": [jane, *alike, critical, never, booked],
    }


@pytest.fixture
def clinic(world: Any) -> dict[str, Any]:
    return build_clinic(world)


def url(org: Any, rest: str) -> str:
    return f"/api/v1/reengagement/{org.pk}/{rest}"


def get(api: Any, token: str, org: Any, rest: str) -> dict[str, Any]:
    response = api("get", url(org, rest), token)
    assert response.status_code == 200, response.content
    answer = body(response)
    assert answer["success"] is True and answer["organization_id"] == org.pk and answer["timestamp"]
    return answer


# --- risk metrics ------------------------------------------------------------------------------
def test_risk_metrics_rank_by_score_then_value_then_id(world, clinic, api, token_for):
    answer = get(api, token_for(world.org_a), world.org_a, "risk-metrics?limit=200")
    rows = answer["risk_metrics"]
    ids = [r["patient_id"] for r in rows]
    alike = sorted(p.pk for p in clinic["alike"])
    assert ids == [clinic["critical"].pk, clinic["jane"].pk, *alike, clinic["never"].pk, clinic["booked"].pk]
    assert answer["total"] == answer["count"] == 32 and answer["data_as_of"] is not None
    assert answer["risk_bands"] == {"critical": 1, "high": 29, "medium": 1, "low": 1, "total": 32}
    critical = rows[0]
    assert critical["churn_risk"] == "critical" and critical["churn_risk_score"] == 80
    assert {r["code"] for r in critical["risk_reasons"]} == {"overdue", "no_future_booking", "recent_dna"}
    assert all(r["text"] for r in critical["risk_reasons"]) and "missed" in critical["risk_summary"]
    assert critical["days_since_last_visit"] == 70 and critical["expected_interval_days"] == 14.0
    assert critical["gap_ratio"] == 5.0 and critical["lifecycle_stage"] == "lapsing"
    assert critical["has_upcoming_appointment"] is False and critical["next_appointment_time"] is None
    jane = rows[1]
    assert jane["value_at_risk"] > rows[2]["value_at_risk"] >= 0 and jane["currency"] == "AUD"
    booked = rows[-1]
    assert booked["has_upcoming_appointment"] is True and booked["churn_risk_score"] == 0


@pytest.mark.parametrize(("band", "total"), [("critical", 1), ("high", 29), ("medium", 1), ("low", 1)])
def test_risk_metrics_filter_by_band(world, clinic, api, token_for, band, total):
    answer = get(api, token_for(world.org_a), world.org_a, f"risk-metrics?risk_level={band}")
    assert answer["total"] == total and {r["churn_risk"] for r in answer["risk_metrics"]} == {band}
    assert answer["risk_bands"]["total"] == 32  # the bands stay the whole organization's


# --- the prioritised worklist ------------------------------------------------------------------
@pytest.mark.parametrize("path", ["prioritized", "patients/prioritized"])
def test_the_worklist_puts_the_most_urgent_first_and_says_why(world, clinic, api, token_for, path):
    answer = get(api, token_for(world.org_a), world.org_a, f"{path}?limit=200")
    rows = answer["prioritized_patients"]
    alike = sorted(p.pk for p in clinic["alike"])
    expected = [clinic["critical"].pk, clinic["jane"].pk, *alike, clinic["never"].pk, clinic["booked"].pk]
    assert [r["patient_id"] for r in rows] == expected and answer["total"] == 32
    assert [r["action_priority"] for r in rows] == [1] + [2] * 29 + [3, 5]
    critical, jane, never = rows[0], rows[1], rows[-2]
    assert critical["recommended_action"] == "follow_up_missed" and "missed" in critical["next_step"]
    assert jane["phone"] == "+61412345678" and jane["email"] == "jane@example.com"
    assert jane["patient_name"] == "Jane Citizen" and jane["recommended_action"] == "rebook_call"
    assert jane["next_step"] == "Call to rebook." and jane["usual_practitioner"] == "Ana"
    assert jane["risk_summary"].startswith("100 days since the last visit vs a usual 14")
    assert never["recommended_action"] == "first_visit_invite" and never["days_since_last_visit"] is None
    assert rows[-1]["recommended_action"] == "none" and rows[-1]["patient_status"] == "active"


def test_the_alias_answers_exactly_like_the_worklist(world, clinic, api, token_for):
    token = token_for(world.org_a)
    first = get(api, token, world.org_a, "prioritized?limit=7&offset=3")
    second = get(api, token, world.org_a, "patients/prioritized?limit=7&offset=3")
    assert first["prioritized_patients"] == second["prioritized_patients"]


@pytest.mark.parametrize(
    ("query", "total"),
    [
        ("risk_level=critical", 1),
        ("risk_level=high", 29),
        ("engagement_status=low_engagement", 30),
        ("engagement_status=disengaged", 1),
        ("engagement_status=highly_engaged", 0),
        ("action_priority=2", 29),
        ("action_priority=5", 1),
        ("action_priority=4", 0),
        ("risk_level=high&action_priority=2&engagement_status=low_engagement", 29),
        ("risk_level=critical&action_priority=2", 0),
    ],
)
def test_worklist_filters(world, clinic, api, token_for, query, total):
    answer = get(api, token_for(world.org_a), world.org_a, f"prioritized?{query}")
    assert answer["total"] == total and answer["count"] == min(total, 50)


def test_the_worklist_page_is_fifty_by_default(world, clinic, api, token_for):
    answer = get(api, token_for(world.org_a), world.org_a, "prioritized")
    assert answer["limit"] == 50 and answer["offset"] == 0 and answer["count"] == 32


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("prioritized", "limit=0"),
        ("prioritized", "limit=201"),
        ("prioritized", "limit=abc"),
        ("prioritized", "limit=-1"),
        ("prioritized", "offset=x"),
        ("prioritized", "action_priority=0"),
        ("prioritized", "action_priority=6"),
        ("prioritized", "action_priority=one"),
        ("prioritized", "risk_level=HIGH"),
        ("prioritized", "engagement_status=engaged"),
        ("patients/prioritized", "limit=201"),
        ("risk-metrics", "limit=0"),
        ("risk-metrics", "limit=201"),
        ("risk-metrics", "limit=abc"),
        ("risk-metrics", "risk_level=severe"),
        ("performance", "timeframe=last_year"),
        ("performance", "timeframe=7d"),
    ],
)
def test_bad_parameters_are_validation_errors(world, clinic, api, token_for, path, query):
    response = api("get", url(world.org_a, f"{path}?{query}"), token_for(world.org_a))
    assert response.status_code == 400, response.content
    error = body(response)["error"]
    assert error["code"] == "VALIDATION_ERROR" and set(error["details"]) == {query.split("=")[0]}


LIST_KEYS = {"prioritized": "prioritized_patients", "patients/prioritized": "prioritized_patients"} | {
    "risk-metrics": "risk_metrics"
}


@pytest.mark.parametrize("path", ["prioritized", "risk-metrics"])
def test_paging_with_ties_never_repeats_or_skips(world, clinic, api, token_for, path):
    token, seen = token_for(world.org_a), []
    for offset in range(0, 35, 5):
        page = get(api, token, world.org_a, f"{path}?limit=5&offset={offset}")
        assert page["total"] == 32 and page["offset"] == offset
        seen += [r["patient_id"] for r in page[LIST_KEYS[path]]]
    assert len(seen) == len(set(seen)) == 32 and set(seen) == {p.pk for p in clinic["ours"]}
    everything = get(api, token, world.org_a, f"{path}?limit=200")[LIST_KEYS[path]]
    assert [r["patient_id"] for r in everything] == seen


def test_an_offset_past_the_end_is_an_empty_page(world, clinic, api, token_for):
    page = get(api, token_for(world.org_a), world.org_a, "prioritized?offset=500")
    assert page["prioritized_patients"] == [] and page["total"] == 32 and page["count"] == 0


@pytest.mark.parametrize("path", ["prioritized", "risk-metrics"])
def test_queries_do_not_grow_with_the_page(world, clinic, api, token_for, path):
    token = token_for(world.org_a)
    get(api, token, world.org_a, f"{path}?limit=1")  # the token's first use mirrors its user

    def queries(limit: int) -> int:
        with CaptureQueriesContext(db) as captured:
            assert get(api, token, world.org_a, f"{path}?limit={limit}")["count"] == limit
        return len(data_queries(captured))

    assert queries(2) == queries(30)


# --- dashboard summary -------------------------------------------------------------------------
def test_dashboard_summary_counts_and_honest_outreach(world, clinic, api, token_for):
    summary = get(api, token_for(world.org_a), world.org_a, "dashboard-summary")["summary"]
    assert summary["total_patients"] == 32
    engagement = {
        k: summary[k] for k in ("highly_engaged", "moderately_engaged", "low_engagement", "disengaged")
    }
    assert engagement == {"highly_engaged": 0, "moderately_engaged": 1, "low_engagement": 30, "disengaged": 1}
    risk = {k: summary[f"{k}_risk"] for k in ("critical", "high", "medium", "low")}
    assert risk == {"critical": 1, "high": 29, "medium": 1, "low": 1}
    assert summary["by_lifecycle_stage"] == {
        "active": 1,
        "due": 0,
        "lapsing": 30,
        "lapsed": 0,
        "dormant": 0,
        "never_converted": 1,
    }
    assert summary["needing_contact"] == 31
    assert summary["needing_contact_by_priority"] == {"1": 1, "2": 29, "3": 1, "4": 0, "5": 0}
    assert summary["with_upcoming"] == 1 and summary["currency"] == "AUD"
    assert (
        summary["value_at_risk"] > 0 and summary["value_at_risk"] == summary["value_at_risk_needing_contact"]
    )
    assert summary["outreach_tracked"] is False and summary["outreach_attempts"] == 0
    assert summary["outreach_success_rate"] is None and summary["last_outreach_at"] is None


# --- performance -------------------------------------------------------------------------------
def test_performance_counts_what_the_appointments_say(world, clinic, api, token_for):
    performance = get(api, token_for(world.org_a), world.org_a, "performance?timeframe=last_7_days")[
        "performance"
    ]
    assert performance["timeframe"] == "last_7_days"
    # The one booking with a known creation time: the booked patient's, 98 days after a visit.
    assert performance["bookings_made"] == 1 and performance["patients_booking"] == 1
    assert performance["reactivations"] == performance["reactivated_patients"] == 1
    assert performance["reactivated_from_lapsing"] == 1 and performance["patients_lapsed"] == 0
    assert performance["outreach_tracked"] is False and performance["outreach_success_rate"] is None
    period = performance["period"]
    assert period["time_zone"] == "Australia/Sydney"
    today = timezone.now().astimezone(world.org_a.tzinfo).date()
    assert period["last_day"] == today.isoformat()
    assert period["first_day"] == (today - timedelta(days=6)).isoformat()


def test_performance_defaults_to_thirty_days(world, clinic, api, token_for):
    performance = get(api, token_for(world.org_a), world.org_a, "performance")["performance"]
    today = timezone.now().astimezone(world.org_a.tzinfo).date()
    assert performance["timeframe"] == "last_30_days"
    assert performance["period"]["first_day"] == (today - timedelta(days=29)).isoformat()


# --- one patient -------------------------------------------------------------------------------
def test_patient_details(world, clinic, api, token_for):
    from patients.tests.test_api_profiles import FRONTEND_FIELDS

    token = token_for(world.org_a)
    details = get(api, token, world.org_a, f"patient/{clinic['critical'].pk}/details")["details"]
    assert set(FRONTEND_FIELDS) <= set(details["profile"]) and details["profile"]["churn_risk"] == "critical"
    recent = details["recent_appointments"]
    assert [a["outcome"] for a in recent] == ["dna", "dna", "attended", "attended", "attended"]
    assert recent[0]["practitioner"] == "Ana" and recent[0]["appointment_type"] == "Standard"
    assert recent[0]["location"] == "Harbour" and details["upcoming_appointments"] == []
    assert details["invoices"]["invoice_count"] == 0 and details["invoices"]["total_amount"] == 0
    jane = get(api, token, world.org_a, f"patient/{clinic['jane'].pk}/details")["details"]
    assert jane["invoices"]["invoice_count"] == 3 and jane["invoices"]["total_amount"] == 300.0
    assert jane["invoices"]["currency"] == "AUD" and jane["invoices"]["open_count"] == 3
    booked = get(api, token, world.org_a, f"patient/{clinic['booked'].pk}/details")["details"]
    assert [a["outcome"] for a in booked["upcoming_appointments"]] == ["booked"]
    assert len(booked["recent_appointments"]) == 3
    # The profile is the one patient-profiles/{id} answers.
    alone = get(api, token, world.org_a, f"patient-profiles/{clinic['booked'].pk}")["profile"]
    moving = {"days_until_next_appointment_detailed"}  # computed to the minute when read
    assert {k: v for k, v in booked["profile"].items() if k not in moving} == {
        k: v for k, v in alone.items() if k not in moving
    }


def test_patient_details_caps_the_history(world, clinic, api, token_for):
    jane, now = clinic["jane"], timezone.now()
    for n in range(25):
        _appointment(world.org_a, jane, f"extra{n}", now - timedelta(days=200 + n))
    details = get(api, token_for(world.org_a), world.org_a, f"patient/{jane.pk}/details")["details"]
    starts = [a["starts_at"] for a in details["recent_appointments"]]
    assert len(starts) == 20 and starts == sorted(starts, reverse=True)


@pytest.mark.parametrize("which", ["missing", "other_tenant", "zero", "huge", "letters", "negative", "float"])
def test_unknown_foreign_and_malformed_ids_are_the_same_404(world, clinic, api, token_for, which):
    ids = {
        "missing": "999999",
        "other_tenant": str(clinic["other"].pk),
        "zero": "0",
        "huge": "99999999999999999999",
        "letters": "abc",
        "negative": "-3",
        "float": "1.5",
    }
    response = api("get", url(world.org_a, f"patient/{ids[which]}/details"), token_for(world.org_a))
    assert response.status_code == 404
    error = body(response)["error"]
    assert (error["code"], error["message"]) == ("NOT_FOUND", "No such patient.")


# --- tenants, authentication, roles ------------------------------------------------------------
ENDPOINTS = [
    "risk-metrics",
    "prioritized",
    "patients/prioritized",
    "dashboard-summary",
    "performance",
    "patient/{patient}/details",
]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_another_organization_is_refused(world, clinic, api, token_for, path):
    foreign = url(world.org_b, path.format(patient=clinic["other"].pk))
    response = api("get", foreign, token_for(world.org_a))
    assert response.status_code == 403 and body(response)["error"]["code"] == "ORG_ACCESS_DENIED"
    # Org B's own admin gets org B's answer, so the refusal was about the caller.
    assert api("get", foreign, token_for(world.org_b, user="user_bob")).status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_mismatched_organization_header_is_refused(world, clinic, api, token_for, path):
    response = api(
        "get",
        url(world.org_a, path.format(patient=clinic["jane"].pk)),
        token_for(world.org_a),
        headers={"HTTP_X_ORGANIZATION_ID": world.org_b.pk},
    )
    assert response.status_code == 403 and body(response)["error"]["code"] == "ORG_ACCESS_DENIED"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_without_credentials_nothing_is_answered(world, clinic, api, path):
    response = api("get", url(world.org_a, path.format(patient=clinic["jane"].pk)))
    assert response.status_code == 401 and body(response)["error"]["code"] == "AUTHENTICATION_REQUIRED"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_read_only_members_may_read(world, clinic, api, token_for, path):
    viewer = token_for(world.org_a, role="org:viewer", user="user_viola")
    assert api("get", url(world.org_a, path.format(patient=clinic["jane"].pk)), viewer).status_code == 200


def test_the_other_tenants_patients_never_appear(world, clinic, api, token_for):
    token, other = token_for(world.org_a), clinic["other"].pk
    for path, key in LIST_KEYS.items():
        answer = get(api, token, world.org_a, f"{path}?limit=200")
        assert other not in {r["patient_id"] for r in answer[key]} and answer["total"] == 32
    assert get(api, token, world.org_a, "dashboard-summary")["summary"]["total_patients"] == 32
    assert get(api, token, world.org_a, "risk-metrics")["risk_bands"]["total"] == 32
    # Org B's lapsing patient is counted in org B only.
    b_summary = get(api, token_for(world.org_b, user="user_bob"), world.org_b, "dashboard-summary")["summary"]
    assert b_summary["total_patients"] == 1


def test_answers_follow_a_profile_refresh(world, clinic, api, token_for, django_capture_on_commit_callbacks):
    """Cached answers are keyed by the profiles' version: a refresh is seen at once."""
    token, jane, last = token_for(world.org_a), clinic["jane"], clinic["alike"][-1]
    assert (
        get(api, token, world.org_a, "prioritized?limit=2")["prioritized_patients"][1]["patient_id"]
        == jane.pk
    )
    baker.make(
        Invoice,
        organization=world.org_a,
        pms="cliniko",
        external_id="big",
        patient=last,
        total_amount=Decimal(5000),
    )
    with django_capture_on_commit_callbacks(execute=True), tenant_scope(world.org_a):
        profiles_refresh_all(world.org_a)  # announces the change once it commits
    rows = get(api, token, world.org_a, "prioritized?limit=2")["prioritized_patients"]
    assert rows[1]["patient_id"] == last.pk


def test_what_is_sent_is_what_the_schema_declares(world, clinic, api, token_for):
    from patients.api import reengagement as views

    token = token_for(world.org_a)
    risk = get(api, token, world.org_a, "risk-metrics?limit=1")
    assert set(risk["risk_metrics"][0]) == set(views.ReengagementRiskMetricSerializer().fields)
    assert set(risk) >= {"count", "total", "limit", "offset", "risk_bands", "data_as_of"}
    row = get(api, token, world.org_a, "prioritized?limit=1")["prioritized_patients"][0]
    assert set(row) == set(views.ReengagementWorklistRowSerializer().fields)
    summary = get(api, token, world.org_a, "dashboard-summary")["summary"]
    assert set(summary) == set(views.ReengagementDashboardSummarySerializer().fields)
    performance = get(api, token, world.org_a, "performance")["performance"]
    assert set(performance) == set(views.ReengagementPerformanceSerializer().fields)
    details = get(api, token, world.org_a, f"patient/{clinic['booked'].pk}/details")["details"]
    assert set(details) == set(views.ReengagementPatientDetailsSerializer().fields)
    assert set(details["upcoming_appointments"][0]) == set(views.ReengagementAppointmentSerializer().fields)
