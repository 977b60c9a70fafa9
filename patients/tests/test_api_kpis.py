"""`GET /api/v1/analytics/{org}/kpis` on a hand-built clinic whose answers are known: values,
defaults, groups, every bad parameter, tenants, roles, query counts and the answer cache."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from model_bakery import baker

from clinics.models import Location
from conftest import data_queries
from patients.kpis import KPI_DEFINITIONS
from patients.models import Invoice, Practitioner
from patients.profiles.cache import profiles_cache_bump
from patients.tests.test_kpis import at, patient, visit

pytestmark = pytest.mark.django_db

MARCH = "from=2026-03-01&to=2026-03-31"


def body(response: Any) -> dict[str, Any]:
    return json.loads(response.content)


def url(org: Any, query: str = "") -> str:
    return f"/api/v1/analytics/{org.pk}/kpis" + (f"?{query}" if query else "")


def get(api: Any, token: str, org: Any, query: str = "") -> dict[str, Any]:
    response = api("get", url(org, query), token)
    assert response.status_code == 200, response.content
    answer = body(response)
    assert answer["success"] is True and answer["organization_id"] == org.pk and answer["timestamp"]
    assert "data_as_of" in answer
    return answer["kpis"]


@pytest.fixture
def clinic(world: Any) -> dict[str, Any]:
    """Org A in March 2026: Ana sees two patients (one misses a second visit), Ben one of them
    again, a walk-in is seen by nobody in particular; $170 invoiced. In February, one visit.
    Org B: a visit of its own in March."""
    org = world.org_a
    ana = baker.make(Practitioner, organization=org, pms="cliniko", external_id="ana", first_name="Ana")
    ben = baker.make(Practitioner, organization=org, pms="cliniko", external_id="ben", first_name="Ben")
    harbour = baker.make(Location, organization=org, pms="cliniko", external_id="h", name="Harbour")
    both, missed, walk_in = patient(org), patient(org), patient(org)
    visit(org, both, at("2026-02-16"), practitioner=ana, location=harbour)
    visit(org, both, at("2026-03-02"), practitioner=ana, location=harbour)
    visit(org, both, at("2026-03-09"), created=at("2026-03-02"), practitioner=ben, location=harbour)
    visit(org, missed, at("2026-03-03"), practitioner=ana, location=harbour)
    visit(org, missed, at("2026-03-10"), practitioner=ana, location=harbour, did_not_arrive=True)
    visit(org, walk_in, at("2026-03-04"))
    for amount, who in (("100.00", ana), ("50.00", ben), ("20.00", None)):
        baker.make(
            Invoice,
            organization=org,
            pms="cliniko",
            external_id=f"inv-{amount}",
            issue_date=at("2026-03-05").date(),
            total_amount=Decimal(amount),
            practitioner=who,
        )
    visit(world.org_b, patient(world.org_b), at("2026-03-05"))
    return {"ana": ana, "ben": ben, "harbour": harbour}


def test_the_kpis_of_a_period_beside_the_one_before(world, clinic, api, token_for):
    kpis = get(api, token_for(world.org_a), world.org_a, MARCH)
    assert kpis["period"] == {"from": "2026-03-01", "to": "2026-03-31", "days": 31}
    assert kpis["previous_period"] == {"from": "2026-01-29", "to": "2026-02-28", "days": 31}
    assert kpis["time_zone"] == "Australia/Sydney" and kpis["group_by"] is None and kpis["groups"] is None
    current, previous = kpis["current"], kpis["previous"]
    assert (current["appointments"], current["attended"], current["dna"]) == (5, 4, 1)
    assert (current["patients_attended"], current["new_patients"]) == (3, 2)  # `both` came in February
    assert current["attendance_rate"] == 0.8 and current["dna_rate"] == 0.2 and current["pva"] == 2.0
    assert current["revenue"] == 170.0 and current["currency"] == "AUD"
    assert current["utilisation"] is None and set(current["unavailable"]) == {
        "utilisation",
        "outreach_conversion",
    }
    assert (previous["attended"], previous["new_patients"], previous["revenue"]) == (1, 1, 0.0)
    assert kpis["changes"]["attended"] == {"change": 3, "relative_change": 3.0}
    assert kpis["changes"]["revenue"] == {"change": 170.0, "relative_change": None}
    assert kpis["changes"]["dna_rate"] == {"change": 0.2, "relative_change": None}  # from 0
    assert kpis["definitions"] == KPI_DEFINITIONS


def test_kpis_per_practitioner(world, clinic, api, token_for):
    kpis = get(api, token_for(world.org_a), world.org_a, f"{MARCH}&group_by=practitioner")
    assert kpis["group_by"] == "practitioner"
    rows = [(g["id"], g["name"], g["current"]["attended"], g["current"]["revenue"]) for g in kpis["groups"]]
    assert rows == [
        (clinic["ana"].pk, "Ana", 2, 100.0),
        (clinic["ben"].pk, "Ben", 1, 50.0),
        (None, "Unassigned", 1, 20.0),
    ]
    ana = kpis["groups"][0]
    assert ana["previous"]["attended"] == 1 and ana["changes"]["attended"]["change"] == 1
    assert kpis["current"]["attended"] == 4  # the total beside the groups


def test_kpis_per_location(world, clinic, api, token_for):
    kpis = get(api, token_for(world.org_a), world.org_a, f"{MARCH}&group_by=location")
    assert [(g["name"], g["current"]["appointments"]) for g in kpis["groups"]] == [
        ("Harbour", 4),
        ("Unassigned", 1),
    ]


def test_the_default_period_is_the_30_days_ending_today_in_the_clinics_calendar(
    world, clinic, api, token_for
):
    token, org = token_for(world.org_a), world.org_a
    today = timezone.now().astimezone(org.tzinfo).date()
    kpis = get(api, token, org)
    assert kpis["period"] == {
        "from": (today - timedelta(days=29)).isoformat(),
        "to": today.isoformat(),
        "days": 30,
    }
    assert kpis["previous_period"]["to"] == (today - timedelta(days=30)).isoformat()
    only_to = get(api, token, org, "to=2026-03-31")["period"]
    assert only_to == {"from": "2026-03-02", "to": "2026-03-31", "days": 30}
    one_day = get(api, token, org, "from=2026-03-04&to=2026-03-04")
    assert one_day["period"]["days"] == 1 and one_day["current"]["attended"] == 1
    a_year = get(api, token, org, "from=2025-03-31&to=2026-03-31")
    assert a_year["period"]["days"] == 366 and a_year["current"]["attended"] == 5


def test_a_period_asked_for_backwards_is_read_the_other_way_round(world, clinic, api, token_for):
    token, org = token_for(world.org_a), world.org_a
    backwards = get(api, token, org, "from=2026-03-31&to=2026-03-01")
    assert backwards == get(api, token, org, MARCH)
    after_today = get(api, token, org, "from=2100-12-31")  # from today to then
    today = timezone.now().astimezone(org.tzinfo).date()
    assert after_today["period"]["from"] == today.isoformat() and after_today["period"]["to"] == "2100-12-31"


def test_a_long_period_is_answered(world, clinic, api, token_for):
    kpis = get(api, token_for(world.org_a), world.org_a, "from=1990-01-01&to=2030-12-31")
    assert kpis["period"]["days"] == 14975 and kpis["current"]["attended"] == 5
    assert kpis["previous_period"]["to"] == "1989-12-31"


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("from=2026-3-01", "from"),
        ("from=01/03/2026", "from"),
        ("from=2026-02-30", "from"),
        ("from=", "from"),
        ("from=20260301", "from"),
        ("to=2026-03-31T00:00", "to"),
        ("to=yesterday", "to"),
        ("to=9999-12-31", "to"),
        ("from=1899-12-31&to=1900-01-01", "from"),
        ("to=2101-01-01", "to"),
        ("group_by=patient", "group_by"),
        ("group_by=Practitioner", "group_by"),
        ("group_by=", "group_by"),
    ],
)
def test_bad_parameters_are_validation_errors(world, clinic, api, token_for, query, parameter):
    response = api("get", url(world.org_a, query), token_for(world.org_a))
    assert response.status_code == 400, response.content
    error = body(response)["error"]
    assert error["code"] == "VALIDATION_ERROR" and set(error["details"]) == {parameter}


def test_without_credentials_nothing_is_answered(world, clinic, api):
    response = api("get", url(world.org_a, MARCH))
    assert response.status_code == 401 and body(response)["error"]["code"] == "AUTHENTICATION_REQUIRED"


def test_another_organization_is_refused_like_everywhere_else(world, clinic, api, token_for):
    token = token_for(world.org_a)
    response = api("get", url(world.org_b, MARCH), token)
    assert response.status_code == 403 and body(response)["error"]["code"] == "ORG_ACCESS_DENIED"
    # The same refusal as a re-engagement endpoint gives for that organization.
    sibling = api("get", f"/api/v1/reengagement/{world.org_b.pk}/dashboard-summary", token)
    assert (sibling.status_code, body(sibling)["error"]["code"]) == (403, "ORG_ACCESS_DENIED")
    # Org B's admin gets org B's own figures: one visit, none of org A's.
    own = get(api, token_for(world.org_b, user="user_bob"), world.org_b, MARCH)
    assert own["current"]["attended"] == 1 and own["current"]["revenue"] == 0.0


def test_a_mismatched_organization_header_is_refused(world, clinic, api, token_for):
    response = api(
        "get",
        url(world.org_a, MARCH),
        token_for(world.org_a),
        headers={"HTTP_X_ORGANIZATION_ID": world.org_b.pk},
    )
    assert response.status_code == 403 and body(response)["error"]["code"] == "ORG_ACCESS_DENIED"


def test_an_unknown_organization_is_not_found(world, api, token_for):
    response = api(
        "get", "/api/v1/analytics/org_NoSuchOrganization0001/kpis", token_for("org_NoSuchOrganization0001")
    )
    assert response.status_code == 404 and body(response)["error"]["code"] == "NOT_FOUND"


def test_read_only_members_may_read(world, clinic, api, token_for):
    viewer = token_for(world.org_a, role="org:viewer", user="user_viola")
    assert api("get", url(world.org_a, MARCH), viewer).status_code == 200


@pytest.mark.parametrize("group_by", ["", "&group_by=practitioner", "&group_by=location"])
def test_queries_do_not_grow_with_the_data_or_the_groups(world, clinic, api, token_for, settings, group_by):
    settings.ANSWER_CACHE_SECONDS = 0  # compute every time
    token, org = token_for(world.org_a), world.org_a
    get(api, token, org, MARCH)  # the token's first use mirrors its user

    def queries() -> int:
        with CaptureQueriesContext(db) as captured:
            get(api, token, org, MARCH + group_by)
        return len(data_queries(captured))

    before = queries()
    for n in range(15):
        who = baker.make(Practitioner, organization=org, pms="cliniko", external_id=f"extra{n}")
        visit(org, patient(org), at("2026-03-20"), practitioner=who)
    assert queries() == before


def test_the_answer_is_cached_until_the_data_changes(world, clinic, api, token_for):
    token, org = token_for(world.org_a), world.org_a
    assert get(api, token, org, MARCH)["current"]["attended"] == 4
    visit(org, patient(org), at("2026-03-20"))  # not announced: the cached answer stands
    with CaptureQueriesContext(db) as captured:
        assert get(api, token, org, MARCH)["current"]["attended"] == 4
    assert not any("patients_appointment" in q["sql"] for q in captured.captured_queries)
    profiles_cache_bump(org.pk)  # what a sync's profile refresh does once it commits
    assert get(api, token, org, MARCH)["current"]["attended"] == 5
    assert get(api, token, org, f"{MARCH}&group_by=location")["current"]["attended"] == 5


def test_what_is_sent_is_what_the_schema_declares(world, clinic, api, token_for):
    from patients.api import kpis as views

    kpis = get(api, token_for(world.org_a), world.org_a, f"{MARCH}&group_by=practitioner")
    assert set(kpis) == set(views.AnalyticsKpisSerializer().fields)
    assert set(kpis["current"]) == set(views.AnalyticsKpiFiguresSerializer().fields)
    assert set(kpis["groups"][0]) == set(views.AnalyticsKpiGroupSerializer().fields)
    assert set(kpis["changes"]) == set(KPI_DEFINITIONS)


def test_the_default_answer_can_be_computed_ahead_of_the_request(world, clinic, api, token_for):
    from patients.api.kpis import kpis_answer

    kpis_answer(world.org_a)  # what warming the cache after a sync would call
    with CaptureQueriesContext(db) as captured:
        kpis = get(api, token_for(world.org_a), world.org_a)
    assert kpis["period"]["days"] == 30
    assert not any("patients_appointment" in q["sql"] for q in captured.captured_queries)
