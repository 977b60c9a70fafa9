import json
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from model_bakery import baker

from patients.models import Appointment, AppointmentType, Invoice, Patient, Practitioner
from routiq.admin_tools import CappedCountPaginator

NOW = datetime(2026, 11, 27, tzinfo=UTC)


@pytest.fixture
def superuser_client(client, world):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456789")
    client.force_login(user)
    return client


@pytest.fixture
def clinic(world):
    practitioner = baker.make(Practitioner, organization=world.org_a, pms="cliniko", external_id="p1", first_name="Ana")
    kind = baker.make(AppointmentType, organization=world.org_a, pms="cliniko", external_id="t1", name="Standard")
    patients = []
    for index in range(12):
        patient = baker.make(
            Patient, organization=world.org_a, pms="cliniko", external_id=f"pt{index}", first_name=f"Zoë{index}",
            last_name="Nguyễn", phones_e164=["+61412345678"] if index == 0 else [],
        )
        patients.append(patient)
        appointment = baker.make(
            Appointment, organization=world.org_a, pms="cliniko", external_id=f"a{index}", patient=patient,
            practitioner=practitioner, appointment_type=kind, starts_at=NOW - timedelta(days=index), ends_at=NOW - timedelta(days=index),
        )
        baker.make(Invoice, organization=world.org_a, pms="cliniko", external_id=f"i{index}", patient=patient, appointment=appointment, total_amount="95.00")
    return patients


@pytest.mark.parametrize("name", ["patient", "practitioner", "appointmenttype", "appointment", "invoice"])
def test_changelists_select_related_in_one_query(superuser_client, clinic, name):
    url = reverse(f"admin:patients_{name}_changelist")
    superuser_client.get(url)  # warm the session and content types
    with CaptureQueriesContext(connection) as queries:
        response = superuser_client.get(url)
    assert response.status_code == 200
    # Session, user, counts, the page itself and the organization filter: never one per row.
    # (Inside a test's transaction the tenant scope is nested: two more, to keep and restore.)
    assert len(queries) <= 12, [q["sql"][:120] for q in queries]


def test_patient_search_finds_a_phone_in_any_spelling(superuser_client, clinic):
    url = reverse("admin:patients_patient_changelist")
    for spelling in ("0412 345 678", "+61412345678", "412345678"):
        content = superuser_client.get(url, {"q": spelling}).content.decode()
        assert "Zoë0" in content, spelling
        assert "Zoë1 " not in content


def test_pms_copies_are_read_only_in_admin(superuser_client, clinic):
    patient = clinic[0]
    response = superuser_client.post(reverse("admin:patients_patient_change", args=[patient.pk]), {"first_name": "Changed"})
    assert response.status_code == 403
    patient.refresh_from_db()
    assert patient.first_name == "Zoë0"
    assert superuser_client.get(reverse("admin:patients_patient_add")).status_code == 403


def test_appointment_changelist_shows_the_derived_outcome(superuser_client, clinic):
    content = superuser_client.get(reverse("admin:patients_appointment_changelist")).content.decode()
    assert "attended" in content


def test_capped_paginator_counts_at_most_the_cap(clinic):
    paginator = CappedCountPaginator(Appointment.objects.filter(organization_id=clinic[0].organization_id).order_by("pk"), 5)
    paginator.cap = 7
    assert paginator.count == 8  # cap + 1 says "more than the cap" without counting them all


def test_capped_paginator_uses_the_estimate_for_unfiltered_big_tables(clinic, monkeypatch):
    from routiq import admin_tools

    monkeypatch.setattr(admin_tools, "_estimated_rows", lambda table: 2_500_000)
    paginator = CappedCountPaginator(Appointment.objects.order_by("pk"), 50)
    with CaptureQueriesContext(connection) as queries:
        assert paginator.count == 2_500_000
    assert not any("COUNT" in q["sql"].upper() for q in queries)


# --- privacy actions ---------------------------------------------------------------------
from django.contrib.auth.models import Permission  # noqa: E402
from django.contrib.messages import get_messages  # noqa: E402

from clinics.models import AuditEvent  # noqa: E402

CHANGELIST = "admin:patients_patient_changelist"


def run_action(client, action, patients, **extra):
    data = {"action": action, "_selected_action": [p.pk for p in patients], "index": 0, **extra}
    if "post" in extra:
        data.pop("index")  # the confirmation page posts back without the changelist's form index
    return client.post(reverse(CHANGELIST), data)


def back_office_client(client, user):
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.user_permissions.add(Permission.objects.get(codename="view_patient"))
    client.force_login(user)
    return client


def privacy_events(org, action):
    return AuditEvent.objects.for_org(org).filter(action=action)


def messages_of(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_export_action_downloads_one_patient_as_json_and_audits_it(superuser_client, clinic, world):
    patient = clinic[3]
    response = run_action(superuser_client, "export_json", [patient])
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"] == f'attachment; filename="patient-{world.org_a.pk}-{patient.pk}.json"'
    data = json.loads(response.content)
    assert data["patient"]["id"] == patient.pk and data["patient"]["first_name"] == "Zoë3"
    assert [a["id"] for a in data["appointments"]] == [patient.appointments.get().pk]
    event = privacy_events(world.org_a, "patient.export").get()
    assert (event.object_id, event.actor_label, event.details) == (str(patient.pk), "root", {"via": "admin"})


def test_export_action_takes_exactly_one_patient(superuser_client, clinic, world):
    response = run_action(superuser_client, "export_json", clinic[:2])
    assert response.status_code == 302
    assert "Select exactly one patient" in " ".join(messages_of(response))
    assert not privacy_events(world.org_a, "patient.export").exists()


def test_anonymise_action_asks_first_then_anonymises_and_audits(superuser_client, clinic, world):
    chosen = clinic[:2]
    page = run_action(superuser_client, "anonymise", chosen)
    assert page.status_code == 200
    assert "admin/patients/anonymise_confirm.html" in [t.name for t in page.templates]
    content = page.content.decode()
    assert "Zoë0 Nguyễn" in content and "Zoë1 Nguyễn" in content and 'name="post" value="yes"' in content
    assert not Patient.objects.filter(pk__in=[p.pk for p in chosen], anonymised_at__isnull=False).exists()

    done = run_action(superuser_client, "anonymise", chosen, post="yes")
    assert done.status_code == 302 and "Anonymised 2 patient(s)." in messages_of(done)
    for patient in chosen:
        patient.refresh_from_db()
        assert patient.anonymised_at is not None and patient.first_name == "Anonymised" and patient.phones_e164 == []
        assert patient.appointments.count() == 1  # the clinic's history stays
    assert sorted(privacy_events(world.org_a, "patient.anonymise").values_list("object_id", flat=True)) == sorted(
        str(p.pk) for p in chosen
    )
    clinic[2].refresh_from_db()
    assert clinic[2].anonymised_at is None


def test_an_organization_admin_may_run_the_privacy_actions(client, clinic, world):
    back_office_client(client, world.admin_a)
    response = run_action(client, "export_json", [clinic[0]])
    assert response.status_code == 200 and json.loads(response.content)["patient"]["id"] == clinic[0].pk
    run_action(client, "anonymise", [clinic[1]], post="yes")
    clinic[1].refresh_from_db()
    assert clinic[1].anonymised_at is not None
    assert privacy_events(world.org_a, "patient.anonymise").get().actor_user == world.admin_a


@pytest.mark.parametrize("who", ["staff_a", "admin_b"])
def test_staff_and_other_organizations_admins_are_refused(client, clinic, world, who):
    back_office_client(client, getattr(world, who))
    patient = clinic[0]
    for action, extra in (("export_json", {}), ("anonymise", {}), ("anonymise", {"post": "yes"})):
        response = run_action(client, action, [patient], **extra)
        assert response.status_code == 302, (action, response.content[:300])
        said = " ".join(messages_of(response))
        # Org B's admin does not even see org A's patient (the admin filters by organization).
        refusals = ["Only an admin of the patient's organization"] if who == "staff_a" else [
            "Select exactly one patient", "Select at least one patient"]
        assert any(refusal in said for refusal in refusals), said
    patient.refresh_from_db()
    assert patient.anonymised_at is None
    assert not AuditEvent.objects.filter(action__startswith="patient.").exists()

def _staff_client(client, user, *codenames):
    from django.contrib.auth.models import Permission

    user.is_staff = True
    user.save(update_fields=["is_staff"])
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return client


def test_clinic_staff_never_see_another_tenants_name(client, world):
    baker.make(Patient, organization=world.org_a, pms="cliniko", external_id="a1", first_name="Ann")
    staff = _staff_client(client, world.staff_a, "view_patient", "view_organization", "view_membership")
    for name in ("patients_patient", "clinics_organization", "clinics_membership"):
        page = staff.get(reverse(f"admin:{name}_changelist"))
        assert page.status_code == 200, name
        assert world.org_b.name not in page.content.decode(), name
    organizations = staff.get(reverse("admin:clinics_organization_changelist")).content.decode()
    assert world.org_a.name in organizations


def test_the_organization_filter_offers_only_the_users_own(client, world):
    from clinics.models import Membership, Organization

    third = Organization.objects.create(id="org_2zzzzzzzzzzzzzzzzzzzzzzzzzz", name="Third Clinic")
    Membership.objects.create(organization=world.org_b, user=world.staff_a, role="staff")
    staff = _staff_client(client, world.staff_a, "view_patient")
    page = staff.get(reverse("admin:patients_patient_changelist")).content.decode()
    assert world.org_a.name in page and world.org_b.name in page
    assert third.name not in page
