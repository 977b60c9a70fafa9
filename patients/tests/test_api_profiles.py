"""The patient-profile endpoints: the frontend's 62 fields, search in any phone spelling,
filters, a stable order across pages, bounds, ids, tenants and query counts."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from model_bakery import baker

from clinics.models import Location
from clinics.rls import tenant_scope
from conftest import data_queries
from patients.api.profile_data import PatientProfileSerializer
from patients.models import Appointment, Patient, PatientProfile, Practitioner
from patients.profiles import profiles_refresh_all
from patients.tests.test_api_reengagement import on_day

pytestmark = pytest.mark.django_db

FRONTEND_FIELDS = """patient_id, organization_id, patient_name, email, phone, cliniko_patient_id, is_active,
activity_status, contact_type, treatment_summary, last_treatment_note, patient_status,
medical_record_number, total_appointment_count, recent_appointment_count,
upcoming_appointment_count, first_appointment_date, last_appointment_date,
next_appointment_time, next_appointment_type, primary_appointment_type, treatment_notes,
current_appointment_type, current_appointment_status, current_appointment_notes,
next_appointment_date, next_appointment_status, next_appointment_notes, total_conversations,
active_conversations, last_conversation_date, days_since_last_conversation, overall_sentiment,
avg_sentiment_score, escalation_count, quality_rating_avg, total_messages, patient_messages,
agent_messages, last_message_date, last_message_sentiment, avg_message_sentiment,
days_since_last_message, total_outreach_attempts, successful_outreach, last_outreach_date,
last_outreach_method, last_outreach_outcome, outreach_success_rate, days_since_last_outreach,
engagement_level, churn_risk, estimated_lifetime_value, contact_success_prediction,
action_priority, days_since_last_appointment, days_until_next_appointment,
days_until_next_appointment_detailed, patient_created_at, patient_updated_at, last_synced_at,
view_generated_at""".replace("\n", " ").split(", ")


def body(response):
    return json.loads(response.content)


@pytest.fixture
def clinic(world):
    """Org A: 30 patients (one with a known mobile, a regular with a future booking, lapsed ones
    with the same numbers, so orderings tie) and org B with one patient of its own."""
    org = world.org_a
    now = timezone.now()
    ana = baker.make(Practitioner, organization=org, pms="cliniko", external_id="pr1", first_name="Ana")
    site = baker.make(Location, organization=org, pms="cliniko", external_id="loc1", name="Harbour")
    patients = []
    for n in range(30):
        who = baker.make(
            Patient,
            organization=org,
            pms="cliniko",
            external_id=f"pt{n}",
            first_name=f"Lee{n:02d}",
            last_name="Same",
            email=f"lee{n}@example.com",
            phones_e164=[],
            mobile_e164="",
            last_synced_at=now,
        )
        patients.append(who)
        for k in range(3):  # three visits a fortnight apart, the last 100 days ago: all alike
            baker.make(
                Appointment,
                organization=org,
                pms="cliniko",
                external_id=f"a{n}-{k}",
                patient=who,
                practitioner=ana,
                location=site,
                starts_at=on_day(org, -100 - 14 * k),
                ends_at=on_day(org, -100 - 14 * k) + timedelta(minutes=30),
            )
    jane, booked = patients[0], patients[1]
    Patient.objects.filter(pk=jane.pk).update(
        first_name="Jane",
        last_name="Citizen",
        email="Jane.Citizen@example.com",
        email_normalized="jane.citizen@example.com",
        phones_e164=["+61412345678"],
        mobile_e164="+61412345678",
    )
    baker.make(
        Appointment,
        organization=org,
        pms="cliniko",
        external_id="future",
        patient=booked,
        starts_at=on_day(org, 3),
        ends_at=on_day(org, 3) + timedelta(minutes=30),
    )
    other = baker.make(
        Patient,
        organization=world.org_b,
        pms="cliniko",
        external_id="b1",
        first_name="Jane",
        last_name="Citizen",
        phones_e164=["+61412345678"],
    )
    with tenant_scope(org):
        profiles_refresh_all(org)
    with tenant_scope(world.org_b):
        profiles_refresh_all(world.org_b)
    return {
        "patients": patients,
        "jane": jane,
        "booked": booked,
        "other": other,
        "practitioner": ana,
        "location": site,
    }


def profiles_url(org, rest=""):
    return f"/api/v1/reengagement/{org.pk}/patient-profiles{rest}"


def listing(api, token, org, query=""):
    response = api("get", profiles_url(org, f"?{query}"), token)
    assert response.status_code == 200, response.content
    return body(response)


def test_every_field_the_frontend_reads_is_there(world, clinic, api, token_for):
    page = listing(api, token_for(world.org_a), world.org_a, "limit=1")
    assert {
        "success",
        "organization_id",
        "patient_profiles",
        "count",
        "total",
        "limit",
        "offset",
        "timestamp",
        "data_as_of",
    } <= set(page)
    profile = page["patient_profiles"][0]
    assert set(FRONTEND_FIELDS) <= set(profile) and len(FRONTEND_FIELDS) == 62
    assert set(profile) == set(PatientProfileSerializer().fields)  # the schema says what is sent
    assert page["total"] == 30 and page["count"] == 1 and page["data_as_of"]
    assert (
        profile["estimated_lifetime_value"] == 0 and profile["total_conversations"] == 0
    )  # zeros, not nulls


@pytest.mark.parametrize(
    "spelling", ["0412 345 678", "+61412345678", "412345678", "+61 412-345-678", "61412345678"]
)
def test_a_phone_is_found_in_any_common_spelling(world, clinic, api, token_for, spelling):
    from urllib.parse import quote

    page = listing(api, token_for(world.org_a), world.org_a, f"search={quote(spelling)}")
    assert [p["patient_id"] for p in page["patient_profiles"]] == [clinic["jane"].pk]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("jane", 1),
        ("CITIZEN", 1),
        ("Jane Citizen", 1),
        ("jane.citizen@EXAMPLE.com", 1),
        ("lee1", 10),
        ("%", 0),
        ("_", 0),
    ],
)
def test_search_by_name_and_email_is_literal(world, clinic, api, token_for, text, found):
    from urllib.parse import quote

    assert listing(api, token_for(world.org_a), world.org_a, f"search={quote(text)}")["total"] == found


def test_filters(world, clinic, api, token_for):
    token = token_for(world.org_a)
    assert listing(api, token, world.org_a, "has_upcoming=true")["total"] == 1
    assert listing(api, token, world.org_a, "has_upcoming=false")["total"] == 29
    assert listing(api, token, world.org_a, "lifecycle_stage=active")["total"] == 1
    assert listing(api, token, world.org_a, "lifecycle_stage=lapsing")["total"] == 29
    assert listing(api, token, world.org_a, "engagement_level=low_engagement")["total"] == 29
    # 100 days on a 14-day rhythm (40 points) and nothing booked (20): high, not critical.
    assert listing(api, token, world.org_a, "churn_risk=high")["total"] == 29
    assert listing(api, token, world.org_a, "churn_risk=critical")["total"] == 0
    assert listing(api, token, world.org_a, "churn_risk=low")["total"] == 1
    assert listing(api, token, world.org_a, f"practitioner={clinic['practitioner'].pk}")["total"] == 30
    assert (
        listing(api, token, world.org_a, f"location={clinic['location'].pk}&has_upcoming=true")["total"] == 1
    )
    assert listing(api, token, world.org_a, "practitioner=999999")["total"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "offset=-1",
        "lifecycle_stage=gone",
        "churn_risk=HIGH",
        "ordering=random",
        "has_upcoming=maybe",
        "practitioner=abc",
        "location=99999999999999999999",
    ],
)
def test_bad_parameters_are_validation_errors(world, clinic, api, token_for, query):
    response = api("get", profiles_url(world.org_a, f"?{query}"), token_for(world.org_a))
    assert response.status_code == 400 and body(response)["error"]["code"] == "VALIDATION_ERROR"
    assert set(body(response)["error"]["details"]) == {query.split("=")[0]}


@pytest.mark.parametrize("ordering", ["priority", "risk", "value", "days_since_last_visit", "name"])
def test_paging_never_repeats_or_skips_a_patient(world, clinic, api, token_for, ordering):
    token = token_for(world.org_a)
    seen = []
    for offset in range(0, 35, 7):
        seen += [
            p["patient_id"]
            for p in listing(api, token, world.org_a, f"ordering={ordering}&limit=7&offset={offset}")[
                "patient_profiles"
            ]
        ]
    assert sorted(seen) == sorted(p.pk for p in clinic["patients"]) and len(seen) == len(set(seen))
    again = [
        p["patient_id"]
        for p in listing(api, token, world.org_a, f"ordering={ordering}&limit=30")["patient_profiles"]
    ]
    assert again == seen


def test_the_priority_order_puts_the_most_urgent_first(world, clinic, api, token_for):
    rows = listing(api, token_for(world.org_a), world.org_a, "limit=30")["patient_profiles"]
    assert rows[-1]["patient_id"] == clinic["booked"].pk and rows[-1]["action_priority"] == 5
    assert [r["action_priority"] for r in rows] == sorted(r["action_priority"] for r in rows)
    lapsing = rows[0]
    assert lapsing["lifecycle_stage"] == "lapsing" and "no booking" in lapsing["risk_summary"]
    assert lapsing["days_since_last_appointment"] == 100 and lapsing["recommended_action"] == "rebook_call"


def test_one_profile_and_the_ids_that_are_not(world, clinic, api, token_for):
    token = token_for(world.org_a)
    response = api("get", profiles_url(world.org_a, f"/{clinic['booked'].pk}"), token)
    profile = body(response)["profile"]
    assert profile["patient_id"] == clinic["booked"].pk and profile["upcoming_appointment_count"] == 1
    assert profile["days_until_next_appointment"] == 3 and profile["next_appointment_status"] == "booked"
    for missing in ("999999", str(clinic["other"].pk), "99999999999999999999", "0"):
        response = api("get", profiles_url(world.org_a, f"/{missing}"), token)
        assert response.status_code == 404 and body(response)["error"]["code"] == "NOT_FOUND", missing
    assert api("get", profiles_url(world.org_a, "/abc"), token).status_code == 404


def test_summary_counts(world, clinic, api, token_for):
    summary = body(api("get", profiles_url(world.org_a, "/summary"), token_for(world.org_a)))["summary"]
    assert summary["total_patients"] == 30
    assert (
        summary["low_engagement"]
        + summary["moderately_engaged"]
        + summary["highly_engaged"]
        + summary["disengaged"]
        == 30
    )
    assert (
        summary["critical_risk"] + summary["high_risk"] + summary["medium_risk"] + summary["low_risk"] == 30
    )
    assert summary["by_lifecycle_stage"]["lapsing"] == 29 and summary["with_upcoming"] == 1
    assert summary["currency"] == "AUD" and summary["value_at_risk"] >= 0


def test_debug_is_for_admins(world, clinic, api, token_for):
    admin = body(api("get", profiles_url(world.org_a, "/debug"), token_for(world.org_a)))["debug"]
    assert admin["patients"] == admin["profiles"] == 30 and admin["patients_without_profile"] == 0
    assert admin["thresholds"]["lapse_soft_days"] == 60 and admin["baseline"] is not None
    staff = api("get", profiles_url(world.org_a, "/debug"), token_for(world.org_a, role="org:member"))
    assert staff.status_code == 403


def test_batch(world, clinic, api, token_for):
    token = token_for(world.org_a)
    ids = [clinic["jane"].pk, clinic["booked"].pk, clinic["other"].pk, 999999, clinic["jane"].pk]
    response = api("post", profiles_url(world.org_a, "/batch"), token, data=json.dumps({"patient_ids": ids}))
    answer = body(response)
    assert [p["patient_id"] for p in answer["patient_profiles"]] == [clinic["jane"].pk, clinic["booked"].pk]
    assert answer["not_found"] == [clinic["other"].pk, 999999]  # the other tenant's is simply not found
    for bad in ({"patient_ids": list(range(1, 202))}, {"patient_ids": []}, {"patient_ids": ["x"]}, {}):
        refused = api("post", profiles_url(world.org_a, "/batch"), token, data=json.dumps(bad))
        assert refused.status_code == 400, bad
    viewer = token_for(world.org_a, role="org:viewer")
    assert (
        api(
            "post", profiles_url(world.org_a, "/batch"), viewer, data=json.dumps({"patient_ids": [1]})
        ).status_code
        == 200
    )


def test_queries_do_not_grow_with_the_page(world, clinic, api, token_for):
    token = token_for(world.org_a)
    listing(api, token, world.org_a, "limit=1")  # the token's first use mirrors its user

    def queries(limit):
        with CaptureQueriesContext(db) as captured:
            assert len(listing(api, token, world.org_a, f"limit={limit}")["patient_profiles"]) == limit
        return len(data_queries(captured))

    assert queries(2) == queries(30)


def test_an_expired_profile_is_recomputed_before_it_is_read(world, clinic, api, token_for):
    booked = clinic["booked"]
    with tenant_scope(world.org_a):
        # Earlier today on the clinic's calendar (not an hour ago: before 1 am that is yesterday).
        now = timezone.now()
        midnight = datetime.combine(now.astimezone(world.org_a.tzinfo).date(), time(0), world.org_a.tzinfo)
        Appointment.objects.filter(external_id="future").update(starts_at=midnight + (now - midnight) / 2)
        PatientProfile.objects.filter(patient=booked).update(
            valid_until=timezone.now() - timedelta(seconds=1)
        )
    profile = body(api("get", profiles_url(world.org_a, f"/{booked.pk}"), token_for(world.org_a)))["profile"]
    assert profile["upcoming_appointment_count"] == 0 and profile["days_since_last_appointment"] == 0
    assert profile["lifecycle_stage"] == "active"


def test_a_cached_answer_reads_nothing_from_the_database(world, clinic, api, token_for, settings):
    token = token_for(world.org_a)
    listing(api, token, world.org_a, "limit=5")  # computed and cached; the user and organization kept
    with CaptureQueriesContext(db) as captured:
        assert len(listing(api, token, world.org_a, "limit=5")["patient_profiles"]) == 5
    sent = data_queries(captured)
    # With Redis as the cache nothing reaches the database: not the organization (remembered for
    # a moment, clinics.selectors), no transaction, no tenant setting. With the database as the
    # cache its own reads do, the tenant set before them.
    expected = [] if settings.REDIS_URL else ["SELECT set_config('app.org_id'"]
    assert [query[:30] for query in sent] == expected, sent


def test_a_lists_total_and_the_data_as_of_are_read_once_per_version(world, clinic, api, token_for):
    from patients.profiles.cache import profiles_cache_bump

    token = token_for(world.org_a)
    first = listing(api, token, world.org_a, "limit=2")

    def reads(query):
        with CaptureQueriesContext(db) as captured:
            answer = listing(api, token, world.org_a, query)
        sent = data_queries(captured)
        counted = any(q.startswith('SELECT COUNT(*) AS "__count"') for q in sent)
        as_of = any(
            q.startswith('SELECT MAX("clinics_pmsconnection"."last_successful_sync_at")') for q in sent
        )
        return answer, counted, as_of

    # Another page and ordering of the same list: its own answer, but neither read again.
    other, counted, as_of = reads("limit=2&offset=2&ordering=name")
    assert other["total"] == first["total"] and other["data_as_of"] == first["data_as_of"]
    assert other["patient_profiles"] != first["patient_profiles"] and (counted, as_of) == (False, False)
    _, counted, _ = reads("limit=2&churn_risk=high")  # another list: counted
    assert counted
    profiles_cache_bump(world.org_a.pk)  # a new version: both read again
    assert reads("limit=2&offset=2&ordering=name")[1:] == (True, True)


def test_an_expiry_recounts_a_filtered_list_but_not_a_searched_one(
    world, clinic, api, token_for, django_capture_on_commit_callbacks
):
    from patients.profiles import profiles_refresh_expired

    token = token_for(world.org_a)
    searched, filtered = "limit=2&search=citizen", "limit=2&churn_risk=high"

    def counted(query):
        with CaptureQueriesContext(db) as captured:
            listing(api, token, world.org_a, query)
        return any(q.startswith('SELECT COUNT(*) AS "__count"') for q in data_queries(captured))

    assert counted(searched) and counted(filtered)
    with tenant_scope(world.org_a):
        PatientProfile.objects.filter(pk=PatientProfile.objects.first().pk).update(valid_until=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert profiles_refresh_expired(world.org_a).patients == 1  # a new profile version
    # Another page, so the page itself is computed again under the new version.
    assert not counted(searched + "&offset=1")  # who matches a search moved with no expiry
    assert counted(filtered + "&offset=1")  # who is at high risk may have
