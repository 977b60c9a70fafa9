"""The patient-profile admin and the staff worklist: what they show, in what order, and to whom."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from itertools import count
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from model_bakery import baker

from clinics.models import Membership, Role
from patients import admin_profiles, selectors
from patients.models import Appointment, Patient, PatientProfile, Practitioner
from patients.profiles import profiles_refresh_all
from routiq.db_roles import APP_ROLE

CHANGELIST = "admin:patients_patientprofile_changelist"
WORKLIST = "admin:patients_patientprofile_worklist"
STALE = timezone.now() - timedelta(days=400)
SYDNEY = ZoneInfo("Australia/Sydney")  # org A's time zone: "days since" counts its calendar days
_ids = count(1)


def local_noon(days_ago: int) -> datetime:
    return datetime.combine(
        timezone.now().astimezone(SYDNEY).date() - timedelta(days=days_ago), time(12), SYDNEY
    )


# --- building blocks ------------------------------------------------------------------------------
def make_patient(org, first: str, last: str, **fields) -> Patient:
    return baker.make(
        Patient,
        organization=org,
        pms="cliniko",
        external_id=f"p{next(_ids)}",
        first_name=first,
        last_name=last,
        **fields,
    )


def make_practitioner(org, first: str, last: str) -> Practitioner:
    return baker.make(
        Practitioner,
        organization=org,
        pms="cliniko",
        external_id=f"pr{next(_ids)}",
        first_name=first,
        last_name=last,
    )


def make_profile(org, patient: Patient, **fields) -> PatientProfile:
    """A profile as the service would store it; tests set the judgement they need."""
    values = {
        "generated_at": timezone.now(),
        "expected_interval_days": 14.0,
        "interval_source": "patient",
        "lifecycle_stage": "lapsing",
        "engagement_level": "low_engagement",
        "churn_risk_score": 60,
        "churn_risk": "high",
        "risk_reasons": [
            {"code": "no_future_booking", "points": 20},
            {"code": "overdue", "points": 40, "days": 45, "usual": 14},
        ],
        "action_priority": 2,
        "recommended_action": "rebook_call",
        "contact_success_prediction": "medium",
        "value_source": "invoices",
        "estimated_lifetime_value": Decimal("1200.00"),
        "value_at_risk": Decimal("400.00"),
        "last_appointment_at": local_noon(45),
        **fields,
    }
    return baker.make(PatientProfile, organization=org, patient=patient, **values)


def visit(org, patient: Patient, practitioner: Practitioner, days_from_now: float) -> Appointment:
    starts_at = timezone.now() + timedelta(days=days_from_now)
    return baker.make(
        Appointment,
        organization=org,
        pms="cliniko",
        external_id=f"a{next(_ids)}",
        patient=patient,
        practitioner=practitioner,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=30),
        pms_created_at=starts_at - timedelta(days=30),
    )


def back_office(client, user, *codenames: str):
    """A clinic member let into the admin, as an operator would set them up."""
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    for codename in codenames or ("view_patientprofile", "view_patient"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return client


def names_in(response) -> list[str]:
    """Patients listed, in page order (changelist and worklist both link each patient)."""
    content = response.content.decode()
    return re.findall(r'<a href="/admin/patients/patient/\d+/change/"[^>]*>([^<]+)</a>', content)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@dataclass
class Clinics:
    ana: Practitioner
    ben: Practitioner
    olga: Practitioner
    amy: PatientProfile
    cal: PatientProfile
    dee: PatientProfile
    bruno: PatientProfile


@pytest.fixture
def clinics(world) -> Clinics:
    """Org A: Amy (lapsing, high, usual practitioner Ana), Cal (dormant, critical, Ben), Dee (due,
    medium, Ana, booked). Org B: Bruno (lapsed, high, Olga)."""
    a, b = world.org_a, world.org_b
    ana, ben, olga = (
        make_practitioner(a, "Ana", "Alvarez"),
        make_practitioner(a, "Ben", "Brown"),
        make_practitioner(b, "Olga", "Orlov"),
    )
    amy = make_patient(
        a,
        "Amy",
        "Lapsing",
        email="Amy@Example.com",
        email_normalized="amy@example.com",
        phones_e164=["+61412345678"],
        mobile_e164="+61412345678",
    )
    return Clinics(
        ana=ana,
        ben=ben,
        olga=olga,
        amy=make_profile(a, amy, primary_practitioner=ana),
        cal=make_profile(
            a,
            make_patient(a, "Cal", "Critical"),
            lifecycle_stage="dormant",
            engagement_level="disengaged",
            churn_risk="critical",
            churn_risk_score=90,
            action_priority=1,
            primary_practitioner=ben,
        ),
        dee=make_profile(
            a,
            make_patient(a, "Dee", "Due"),
            lifecycle_stage="due",
            engagement_level="moderately_engaged",
            churn_risk="medium",
            churn_risk_score=30,
            action_priority=3,
            primary_practitioner=ana,
            next_appointment_at=timezone.now() + timedelta(days=3),
        ),
        bruno=make_profile(
            b,
            make_patient(b, "Bruno", "Bayside"),
            lifecycle_stage="lapsed",
            engagement_level="disengaged",
            primary_practitioner=olga,
        ),
    )


@pytest.fixture
def superuser_client(client, world):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456789"))
    return client


@pytest.fixture
def multi_org_user(world):
    user = baker.make(get_user_model(), username="mia-multi")
    baker.make(Membership, organization=world.org_a, user=user, role=Role.STAFF)
    baker.make(Membership, organization=world.org_b, user=user, role=Role.STAFF)
    return user


# --- the changelist ---------------------------------------------------------------------------------
def test_changelist_renders_with_each_filter(superuser_client, clinics, world):
    url = reverse(CHANGELIST)
    cases = [
        ({}, {"Amy Lapsing", "Cal Critical", "Dee Due", "Bruno Bayside"}),
        ({"churn_risk__exact": "critical"}, {"Cal Critical"}),
        ({"lifecycle_stage__exact": "lapsing"}, {"Amy Lapsing"}),
        ({"engagement_level__exact": "moderately_engaged"}, {"Dee Due"}),
        ({"action_priority": "2"}, {"Amy Lapsing", "Bruno Bayside"}),
        ({"organization": world.org_a.pk, "practitioner": str(clinics.ana.pk)}, {"Amy Lapsing", "Dee Due"}),
        ({"organization": world.org_b.pk}, {"Bruno Bayside"}),
    ]
    for params, expected in cases:
        response = superuser_client.get(url, params)
        assert response.status_code == 200, params
        assert set(names_in(response)) == expected, params


def test_changelist_lists_in_priority_order_with_the_columns(superuser_client, clinics):
    response = superuser_client.get(reverse(CHANGELIST), {"organization": clinics.amy.organization_id})
    assert names_in(response) == ["Cal Critical", "Amy Lapsing", "Dee Due"]  # priority 1, 2, 3
    content = response.content.decode()
    assert "High (60)" in content and "Critical (90)" in content
    assert "AUD 1,200.00" in content and "AUD 400.00" in content  # lifetime value, value at risk
    assert '<td class="field-days_since_last_visit">45</td>' in content


@pytest.mark.parametrize(
    "term",
    [
        "Lapsing",
        "amy lapsing",
        "AMY@example.com",
        "0412 345 678",
        "+61 412 345 678",
        "61412345678",
        "412345678",
    ],
)
def test_search_by_name_email_and_phone_in_any_spelling(superuser_client, clinics, term):
    response = superuser_client.get(reverse(CHANGELIST), {"q": term})
    assert response.status_code == 200
    assert names_in(response) == ["Amy Lapsing"], term


def test_practitioner_filter_means_what_the_api_filter_means(client, world):
    """The usual practitioner (most attended visits), as `selectors.patient_profile_list` and the API
    read `practitioner`: a patient seen once by someone is not that practitioner's patient."""
    org = world.org_a
    ana, ben = make_practitioner(org, "Ana", "Alvarez"), make_practitioner(org, "Ben", "Brown")
    ursula, otto = make_patient(org, "Ursula", "Usual"), make_patient(org, "Otto", "Other")
    for days in (-60, -40, -20):
        visit(org, ursula, ana, days)
    visit(org, ursula, ben, -10)
    visit(org, otto, ben, -30)
    visit(org, otto, ben, -15)
    profiles_refresh_all(org)
    back_office(client, world.staff_a)
    for practitioner, expected in ((ana, ["Ursula Usual"]), (ben, ["Otto Other"])):
        response = client.get(reverse(CHANGELIST), {"practitioner": practitioner.pk})
        assert names_in(response) == expected
        by_api = selectors.patient_profile_list(
            org, filters=selectors.ProfileFilters(practitioner_id=practitioner.pk)
        )
        assert [str(p.patient) for p in by_api] == expected


def test_filters_hide_other_tenants_names(client, clinics, world):
    back_office(client, world.staff_a)
    content = client.get(reverse(CHANGELIST)).content.decode()
    assert "Ana Alvarez" in content and "Ben Brown" in content  # the practitioner choices
    assert "Olga" not in content and "Bayside Chiro" not in content  # no org B practitioner, no org B name
    # Asking for org B's practitioner by id shows nothing rather than org B's patients.
    response = client.get(reverse(CHANGELIST), {"practitioner": clinics.olga.pk})
    assert response.status_code == 200 and names_in(response) == []


def test_a_member_of_several_organizations_filters_by_organization(client, clinics, world, multi_org_user):
    back_office(client, multi_org_user)
    everything = client.get(reverse(CHANGELIST))
    content = everything.content.decode()
    assert "Bayside Chiro" in content and "Harbour Physio" in content  # the organization filter's choices
    assert "Ana Alvarez, Harbour Physio" in content and "Olga Orlov, Bayside Chiro" in content
    only_b = client.get(reverse(CHANGELIST), {"organization": world.org_b.pk})
    assert names_in(only_b) == ["Bruno Bayside"]
    assert "Ana Alvarez" not in only_b.content.decode()  # practitioners follow the chosen organization


@pytest.mark.parametrize("who", ["staff_a", "admin_a"])
def test_org_a_members_never_see_org_b_profiles(client, clinics, world, who):
    back_office(client, getattr(world, who))
    assert set(names_in(client.get(reverse(CHANGELIST)))) == {"Amy Lapsing", "Cal Critical", "Dee Due"}
    # With one organization there is no organization filter: asking for org B's is ignored.
    own = names_in(client.get(reverse(CHANGELIST), {"organization": world.org_b.pk}))
    assert set(own) == {"Amy Lapsing", "Cal Critical", "Dee Due"}
    for params in ({"q": "Bruno"}, {"q": "Bayside"}):
        assert names_in(client.get(reverse(CHANGELIST), params)) == [], params
    detail = client.get(reverse("admin:patients_patientprofile_change", args=[clinics.bruno.pk]))
    assert detail.status_code == 302 and detail.url == reverse("admin:index")
    assert "Bruno" not in client.get(detail.url).content.decode()
    mine = client.get(reverse("admin:patients_patientprofile_change", args=[clinics.amy.pk]))
    assert mine.status_code == 200 and "Amy Lapsing" in mine.content.decode()


def test_org_b_admin_sees_only_org_b(client, clinics, world):
    back_office(client, world.admin_b)
    assert names_in(client.get(reverse(CHANGELIST))) == ["Bruno Bayside"]
    assert names_in(client.get(reverse(WORKLIST))) == ["Bruno Bayside"]
    assert "Ana Alvarez" not in client.get(reverse(CHANGELIST)).content.decode()


def test_changelist_bad_parameters_do_not_fail(superuser_client, clinics, world):
    url = reverse(CHANGELIST)
    org_a = world.org_a.pk
    # A value outside an offered filter's choices matches nothing (as the stock filters do).
    for params in (
        {"action_priority": "9"},
        {"action_priority": "one"},
        {"organization": org_a, "practitioner": "abc"},
        {"organization": org_a, "practitioner": "99999999999999999999999"},
        {"organization": org_a, "practitioner": str(clinics.olga.pk)},  # org B's, while org A is chosen
        {"churn_risk__exact": "<script>"},
        {"organization": "org_nope"},
    ):
        response = superuser_client.get(url, params)
        assert response.status_code == 200, params
        assert names_in(response) == [], params
    # A filter not offered (an operator's practitioner filter before an organization is chosen) is
    # left out, as are a bad page and ordering; unknown lookups get the admin's own "?e=1" redirect.
    for params in ({"practitioner": "abc"}, {"p": "zz", "o": "zz"}):
        response = superuser_client.get(url, params)
        assert response.status_code == 200 and len(names_in(response)) == 4, params
    unknown = superuser_client.get(url, {"no_such": "1"})
    assert unknown.status_code == 302 and unknown.url.endswith("?e=1")


def test_changelist_is_a_constant_number_of_queries(client, world):
    back_office(client, world.staff_a)
    practitioner = make_practitioner(world.org_a, "Ana", "Alvarez")

    def add(n: int) -> None:
        for _ in range(n):
            make_profile(
                world.org_a,
                make_patient(world.org_a, "Pat", f"N{next(_ids)}"),
                primary_practitioner=practitioner,
            )

    def queries_for_page() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse(CHANGELIST))
        assert response.status_code == 200
        return len(queries), len(names_in(response))

    add(3)
    client.get(reverse(CHANGELIST))  # warm the session and content types
    few, shown = queries_for_page()
    assert shown == 3
    add(20)
    many, shown = queries_for_page()
    assert shown == 23
    assert many == few, "a query per row crept into the changelist"


# --- read only, and the detail ----------------------------------------------------------------------
def test_profiles_cannot_be_added_edited_or_deleted(superuser_client, clinics):
    profile = clinics.amy
    change_url = reverse("admin:patients_patientprofile_change", args=[profile.pk])
    page = superuser_client.get(change_url)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    response = superuser_client.post(change_url, {"churn_risk_score": "1", "lifecycle_stage": "active"})
    assert response.status_code == 403
    profile.refresh_from_db()
    assert (profile.churn_risk_score, profile.lifecycle_stage) == (60, "lapsing")
    assert superuser_client.get(reverse("admin:patients_patientprofile_add")).status_code == 403
    assert (
        superuser_client.post(reverse("admin:patients_patientprofile_delete", args=[profile.pk])).status_code
        == 403
    )
    assert PatientProfile.objects.filter(pk=profile.pk).exists()
    changelist = superuser_client.get(reverse(CHANGELIST)).content.decode()
    assert 'value="delete_selected"' not in changelist and 'value="recompute"' in changelist


def test_detail_shows_every_field_and_readable_reasons(superuser_client, clinics):
    model_admin = admin_profiles.PatientProfileAdmin
    shown = {name for _, options in model_admin.fieldsets for name in options["fields"]}
    stored = {field.name for field in PatientProfile._meta.concrete_fields} - {"id"}
    # The patient and the reasons are shown through readable stand-ins; everything else as stored.
    assert stored - {"patient", "risk_reasons", "recommended_action"} <= shown
    assert {"patient_link", "risk_reasons_list", "recommended_action_text"} <= shown
    content = superuser_client.get(
        reverse("admin:patients_patientprofile_change", args=[clinics.amy.pk])
    ).content.decode()
    for name in shown:
        assert f"field-{name}" in content, name
    for heading in ("Judgement", "Visits", "Last 90 days", "Timeline", "Usual care", "Rhythm", "Value"):
        assert f">{heading}<" in content, heading
    assert (
        "<li><code>overdue</code> (+40 points): 45 days since the last visit vs a usual 14 days</li>"
        in content
    )
    assert "<li><code>no_future_booking</code> (+20 points): no booking</li>" in content
    assert content.index("overdue</code>") < content.index("no_future_booking</code>")  # heaviest first
    assert "&quot;code&quot;" not in content and '"code":' not in content  # not the raw JSON
    assert "Call to rebook." in content
    assert 'href="/admin/patients/patient/' in content
    assert "<h2>Amy Lapsing, Harbour Physio</h2>" in content
    # The last visit, noon in Sydney, is shown in the clinic's time (in UTC it would read 1 or 2 a.m.).
    assert re.search(
        r'field-last_appointment_at">(?:(?!field-).)*<div class="readonly">[^<]*, noon</div>', content, re.S
    )


# --- recomputing ------------------------------------------------------------------------------------
@pytest.fixture
def stale(world):
    """Profiles with a wrong judgement: each patient in fact has a visit booked next week."""
    ana, olga = (
        make_practitioner(world.org_a, "Ana", "Alvarez"),
        make_practitioner(world.org_b, "Olga", "Orlov"),
    )
    profiles = {}
    for key, org, practitioner in (
        ("a", world.org_a, ana),
        ("a_unselected", world.org_a, ana),
        ("b", world.org_b, olga),
    ):
        patient = make_patient(org, "Stale", key)
        visit(org, patient, practitioner, -14)
        visit(org, patient, practitioner, 7)
        profiles[key] = make_profile(
            org, patient, lifecycle_stage="dormant", churn_risk_score=99, generated_at=STALE
        )
    return profiles


def recompute(client, profiles):
    data = {"action": "recompute", "_selected_action": [p.pk for p in profiles], "index": 0}
    return client.post(reverse(CHANGELIST), data)


def is_recomputed(profile: PatientProfile) -> bool:
    profile.refresh_from_db()
    return (
        profile.generated_at > STALE and profile.lifecycle_stage == "active" and profile.upcoming_count == 1
    )


def test_recompute_action_recomputes_the_selection_in_each_organization(superuser_client, stale, monkeypatch):
    calls = []
    real = admin_profiles.profiles_refresh

    def spy(organization, *, patient_ids):
        calls.append((organization.pk, patient_ids))
        return real(organization, patient_ids=patient_ids)

    monkeypatch.setattr(admin_profiles, "profiles_refresh", spy)
    response = recompute(superuser_client, [stale["a"], stale["b"]])
    assert response.status_code == 302
    assert "Recomputed 2 profile(s)." in messages_of(response)
    assert sorted(calls) == sorted(
        [
            (stale["a"].organization_id, [stale["a"].patient_id]),
            (stale["b"].organization_id, [stale["b"].patient_id]),
        ]
    )
    assert is_recomputed(stale["a"]) and is_recomputed(stale["b"])
    assert not is_recomputed(stale["a_unselected"])


def test_recompute_action_never_reaches_another_tenant(client, stale, world):
    back_office(client, world.staff_a)
    response = recompute(client, [stale["a"], stale["b"]])  # org B's id forged into the form
    assert "Recomputed 1 profile(s)." in messages_of(response)
    assert is_recomputed(stale["a"])
    assert not is_recomputed(stale["b"])


# --- the worklist -----------------------------------------------------------------------------------
@pytest.fixture
def worklist(world):
    org = world.org_a
    ana = make_practitioner(org, "Ana", "Alvarez")
    now = timezone.now()

    def profile(first: str, last: str, **fields) -> PatientProfile:
        return make_profile(
            org, make_patient(org, first, last, email=f"{first.lower()}@example.com"), **fields
        )

    return {
        "ana": ana,
        "walt": profile(
            "Walt", "Wobbly", action_priority=1, value_at_risk=Decimal("300"), churn_risk="critical"
        ),
        "xena": profile(
            "Xena", "Extra", action_priority=2, value_at_risk=Decimal("5000"), primary_practitioner=ana
        ),
        "vera": profile(
            "Vera",
            "Valuable",
            action_priority=1,
            value_at_risk=Decimal("900"),
            churn_risk="critical",
            lifecycle_stage="dormant",
        ),
        "yuri": profile(
            "Yuri",
            "Booked",
            action_priority=1,
            value_at_risk=Decimal("9999"),
            next_appointment_at=now + timedelta(days=3),
        ),
        "zara": profile("Zara", "Passed", action_priority=3, next_appointment_at=now - timedelta(hours=2)),
    }


def test_worklist_orders_by_priority_then_value_at_risk_and_leaves_out_booked_patients(
    client, world, worklist
):
    back_office(client, world.staff_a)
    response = client.get(reverse(WORKLIST))
    assert response.status_code == 200
    assert "admin/patients/worklist.html" in [t.name for t in response.templates]
    # Yuri holds a booking: no call needed. Zara's booking has passed: she is due a call again.
    assert names_in(response) == ["Vera Valuable", "Walt Wobbly", "Xena Extra", "Zara Passed"]
    content = response.content.decode()
    assert 'href="mailto:vera@example.com"' in content
    assert "<li>45 days since the last visit vs a usual 14 days</li><li>no booking</li>" in content
    assert "Call to rebook." in content and "AUD 5,000.00" in content and "45 days ago" in content
    assert "4 patients to contact." in content


def test_worklist_filters(client, world, worklist, multi_org_user, clinics):
    back_office(client, world.staff_a)
    url = reverse(WORKLIST)
    assert names_in(client.get(url, {"risk": "critical"})) == ["Vera Valuable", "Cal Critical", "Walt Wobbly"]
    assert names_in(client.get(url, {"stage": "dormant"})) == ["Vera Valuable", "Cal Critical"]
    assert names_in(client.get(url, {"practitioner": worklist["ana"].pk})) == ["Xena Extra"]
    back_office(client, multi_org_user)
    assert names_in(client.get(url, {"organization": world.org_b.pk})) == ["Bruno Bayside"]
    chosen_a = client.get(url, {"organization": world.org_a.pk}).content.decode()
    assert "Bruno" not in chosen_a and "Amy Lapsing" in chosen_a
    assert '<option value="org_2yBqMfT93kLpZcVwXs4Rt8uNa1Q">Bayside Chiro</option>' in chosen_a


def test_worklist_pages_by_fifty_and_keeps_the_filters(client, world):
    for n in range(55):
        make_profile(
            world.org_a, make_patient(world.org_a, "Pat", f"Page{n:02d}"), value_at_risk=Decimal(1000 - n)
        )
    back_office(client, world.staff_a)
    first = client.get(reverse(WORKLIST), {"risk": "high"})
    assert len(names_in(first)) == 50 and names_in(first)[0] == "Pat Page00"
    content = first.content.decode()
    assert "Page 1 of 2" in content and "?risk=high&amp;page=2" in content
    second = client.get(reverse(WORKLIST), {"risk": "high", "page": "2"})
    assert names_in(second) == [f"Pat Page{n}" for n in range(50, 55)]


def test_worklist_of_org_a_staff_never_shows_org_b(client, clinics, world):
    back_office(client, world.staff_a)
    for params in ({}, {"organization": world.org_b.pk}, {"practitioner": clinics.olga.pk}):
        response = client.get(reverse(WORKLIST), params)
        assert response.status_code == 200
        content = response.content.decode()
        assert "Bruno" not in content and "Olga" not in content and "Bayside Chiro" not in content
        assert names_in(response) == ["Cal Critical", "Amy Lapsing"], params  # Dee is booked
    said = messages_of(client.get(reverse(WORKLIST), {"organization": world.org_b.pk}))
    assert any("Ignored organization" in m for m in said)


def test_worklist_bad_parameters_are_ignored_with_a_message(client, clinics, world):
    back_office(client, world.staff_a)
    response = client.get(
        reverse(WORKLIST),
        {
            "risk": "extreme",
            "stage": "<script>x</script>",
            "practitioner": "abc",
            "organization": "org_nope",
            "page": "-3",
        },
    )
    assert response.status_code == 200
    said = " ".join(messages_of(response))
    for name in ("risk", "stage", "practitioner", "organization", "page"):
        assert f"Ignored {name}" in said, name
    assert "<script>x</script>" not in response.content.decode()
    assert names_in(response) == ["Cal Critical", "Amy Lapsing"]  # as if no filter had been given
    for params in ({"practitioner": "99999999999999999999999"}, {"page": "999"}, {"risk": "x" * 5000}):
        assert client.get(reverse(WORKLIST), params).status_code == 200, params


def test_worklist_needs_a_login_a_membership_and_the_view_permission(client, clinics, world):
    anonymous = client.get(reverse(WORKLIST))
    assert anonymous.status_code == 302 and anonymous.url.startswith(reverse("admin:login"))
    nobody = baker.make(get_user_model(), username="nora-nomember")
    back_office(client, nobody)
    response = client.get(reverse(WORKLIST))
    assert response.status_code == 200 and names_in(response) == []
    assert "not a member of any organization" in response.content.decode()
    assert names_in(client.get(reverse(CHANGELIST))) == []
    back_office(client, baker.make(get_user_model(), username="no-perms"), "view_patient")
    assert client.get(reverse(WORKLIST)).status_code == 403


def test_worklist_is_a_constant_number_of_queries(client, world):
    back_office(client, world.staff_a)

    def add(n: int) -> None:
        for _ in range(n):
            make_profile(world.org_a, make_patient(world.org_a, "Pat", f"N{next(_ids)}"))

    def queries_for_page() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(reverse(WORKLIST))
        assert response.status_code == 200
        return len(queries), len(names_in(response))

    add(2)
    client.get(reverse(WORKLIST))
    few, shown = queries_for_page()
    assert shown == 2
    add(25)
    many, shown = queries_for_page()
    assert (many, shown) == (few, 27)


def test_worklist_is_linked_from_the_changelist_and_the_app_index(superuser_client, clinics):
    worklist_url = reverse(WORKLIST)
    assert worklist_url == "/admin/patients/patientprofile/worklist/"
    for page in (reverse(CHANGELIST), reverse("admin:app_list", args=["patients"])):
        assert f'href="{worklist_url}"' in superuser_client.get(page).content.decode(), page


# --- under row-level security, as the product runs ---------------------------------------------------
@pytest.fixture
def as_app_role(app_role):
    """Connect as the application role for the rest of the test (the suite's superuser bypasses the
    policies). Committed transactions, so each request's tenant setting ends with it."""

    def switch() -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {APP_ROLE}")

    yield switch
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


@pytest.mark.django_db(transaction=True)
def test_pages_work_under_row_level_security(client, clinics, world, multi_org_user, as_app_role):
    back_office(client, multi_org_user)
    back_office(client, world.staff_a)
    as_app_role()
    assert set(names_in(client.get(reverse(CHANGELIST)))) == {"Amy Lapsing", "Cal Critical", "Dee Due"}
    assert names_in(client.get(reverse(WORKLIST))) == ["Cal Critical", "Amy Lapsing"]
    response = recompute(client, [clinics.amy, clinics.bruno])
    assert "Recomputed 1 profile(s)." in messages_of(response)
    # A member of several organizations has no tenant set by the middleware: the pages about one
    # chosen organization run in its scope.
    client.force_login(multi_org_user)
    assert names_in(client.get(reverse(WORKLIST), {"organization": world.org_b.pk})) == ["Bruno Bayside"]
    assert names_in(client.get(reverse(CHANGELIST), {"organization": world.org_b.pk})) == ["Bruno Bayside"]


def test_the_short_worklist_address_leads_to_the_worklist(client):
    response = client.get("/admin/patients/worklist/?risk=high")
    assert response.status_code == 302
    assert response.url == reverse("admin:patients_patientprofile_worklist") + "?risk=high"


@pytest.mark.django_db(transaction=True)
def test_a_member_of_several_works_in_the_chosen_one_everywhere(
    client, clinics, world, multi_org_user, as_app_role
):
    """Any admin page, not only the profile pages: the middleware scopes the request to the
    organization chosen in the filter, and remembers it for pages without one."""
    back_office(client, multi_org_user, "view_patient")
    as_app_role()
    patients = reverse("admin:patients_patient_changelist")
    assert "Bruno" not in client.get(patients).content.decode()  # nothing chosen yet: no tenant
    page = client.get(patients, {"organization__id__exact": world.org_b.pk}).content.decode()
    assert "Bruno" in page and "Amy" not in page
    detail = client.get(reverse("admin:patients_patient_change", args=[clinics.bruno.patient_id]))
    assert detail.status_code == 200  # remembered: B's patient opens without a filter
    assert (
        client.get(reverse("admin:patients_patient_change", args=[clinics.amy.patient_id])).status_code == 302
    )
    page = client.get(patients, {"organization__id__exact": world.org_a.pk}).content.decode()
    assert "Amy" in page and "Bruno" not in page
    foreign = client.get(patients, {"organization__id__exact": "org_2zzzzzzzzzzzzzzzzzzzzzzzzzz"})
    assert "Bruno" not in foreign.content.decode()  # not theirs: the remembered one (A) stays
