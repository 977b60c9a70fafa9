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
    assert len(queries) <= 10, [q["sql"][:120] for q in queries]


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
