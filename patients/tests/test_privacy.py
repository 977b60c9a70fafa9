from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from model_bakery import baker

from clinics.models import AuditEvent
from patients import privacy
from patients.models import Appointment, Invoice, Patient

NOW = datetime(2026, 11, 27, tzinfo=UTC)


@pytest.fixture
def patient(world):
    patient = baker.make(
        Patient, organization=world.org_a, pms="cliniko", external_id="p1", first_name="Zoë", last_name="Nguyễn",
        email="Zoe@Example.com", email_normalized="zoe@example.com", phone_numbers=[{"type": "Mobile", "number": "0412 345 678"}],
        phones_e164=["+61412345678"], mobile_e164="+61412345678", date_of_birth="1990-01-02", pms_updated_at=NOW,
    )
    seen = timezone.now() - timedelta(days=3)
    appointment = baker.make(
        Appointment, organization=world.org_a, pms="cliniko", external_id="a1", patient=patient,
        starts_at=seen, ends_at=seen, cancellation_note="called about her knee",
    )
    baker.make(Invoice, organization=world.org_a, pms="cliniko", external_id="i1", patient=patient, appointment=appointment, total_amount="95.00")
    return patient


def url(org, tail):
    return f"/api/v1/privacy/{org.pk}/{tail}"


def test_export_has_everything_and_is_audited(world, api, token_for, patient):
    response = api("GET", url(world.org_a, f"patients/{patient.pk}/export"), token_for(world.org_a))
    body = response.json()
    assert response.status_code == 200, body
    export = body["export"]
    assert export["patient"]["first_name"] == "Zoë" and export["patient"]["email"] == "Zoe@Example.com"
    assert [a["external_id"] for a in export["appointments"]] == ["a1"]
    assert export["appointments"][0]["outcome"] == "attended"
    assert export["invoices"][0]["total_amount"] == "95.00"
    event = AuditEvent.objects.for_org(world.org_a).get(action="patient.export")
    assert event.object_id == str(patient.pk) and event.actor_label == "user_alice"
    assert event.request_id == response["X-Request-ID"]
    # The log names the patient by id only.
    assert "Zoë" not in str(event.details) and "Nguy" not in event.actor_label


def test_anonymise_erases_personal_fields_and_keeps_aggregates(world, api, token_for, patient):
    response = api("POST", url(world.org_a, f"patients/{patient.pk}/anonymise"), token_for(world.org_a))
    assert response.status_code == 200, response.json()
    patient.refresh_from_db()
    assert patient.first_name == "Anonymised" and patient.email == "" and patient.phones_e164 == []
    assert patient.date_of_birth is None and patient.anonymised_at is not None
    assert Appointment.objects.for_org(world.org_a).filter(patient=patient).count() == 1
    assert Invoice.objects.for_org(world.org_a).filter(patient=patient).count() == 1
    assert Appointment.objects.get(external_id="a1").cancellation_note == ""
    assert AuditEvent.objects.for_org(world.org_a).filter(action="patient.anonymise").count() == 1


def test_a_sync_cannot_write_personal_data_back(world, patient):
    privacy.patient_anonymise(world.org_a, patient_id=patient.pk)
    patient.refresh_from_db()
    incoming = {"first_name": "Zoë", "email": "zoe@example.com", "pms_updated_at": NOW, "archived_at": None}
    allowed = privacy.patient_sync_fields(patient, incoming)
    assert allowed == {"pms_updated_at": NOW, "archived_at": None}
    assert privacy.patient_sync_fields(None, incoming) == incoming


def test_privacy_needs_the_admin_role(world, api, token_for, patient):
    for role in ("org:member", "org:viewer"):
        response = api("GET", url(world.org_a, f"patients/{patient.pk}/export"), token_for(world.org_a, role=role))
        assert response.status_code == 403 and response.json()["error"]["code"] == "PERMISSION_DENIED"
    assert not AuditEvent.objects.exists()


def test_another_tenants_patient_is_404_like_a_missing_one(world, api, token_for, patient):
    other = baker.make(Patient, organization=world.org_b, pms="cliniko", external_id="p9")
    token = token_for(world.org_a)
    foreign = api("GET", url(world.org_a, f"patients/{other.pk}/export"), token)
    missing = api("GET", url(world.org_a, "patients/987654321/export"), token)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["error"]["message"] == missing.json()["error"]["message"]
    assert api("POST", url(world.org_a, f"patients/{other.pk}/anonymise"), token).status_code == 404
    other.refresh_from_db()
    assert other.anonymised_at is None


def test_malformed_patient_id_is_404(world, api, token_for):
    response = api("GET", url(world.org_a, "patients/abc/export"), token_for(world.org_a))
    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"


def test_retention_purge_dry_run_then_delete(world, api, token_for, patient):
    old = baker.make(Patient, organization=world.org_a, pms="cliniko", external_id="old", pms_updated_at=NOW - timedelta(days=4000))
    baker.make(Appointment, organization=world.org_a, pms="cliniko", external_id="a-old", patient=old,
               starts_at=timezone.now() - timedelta(days=3000), ends_at=timezone.now() - timedelta(days=3000))
    baker.make(Appointment, organization=world.org_b, pms="cliniko", external_id="b-old",
               starts_at=timezone.now() - timedelta(days=3000), ends_at=timezone.now() - timedelta(days=3000))
    token = token_for(world.org_a)
    dry = api("POST", url(world.org_a, "purge"), token, data={}).json()["purge"]
    assert (dry["appointments"], dry["patients"], dry["dry_run"]) == (1, 1, True)
    assert Patient.objects.filter(pk=old.pk).exists()
    done = api("POST", url(world.org_a, "purge"), token, data={"dry_run": False}).json()["purge"]
    assert (done["appointments"], done["patients"]) == (1, 1)
    assert not Patient.objects.filter(pk=old.pk).exists()
    assert Patient.objects.filter(pk=patient.pk).exists()
    assert Appointment.objects.for_org(world.org_b).count() == 1  # other tenant untouched
    assert AuditEvent.objects.for_org(world.org_a).filter(action="retention.purge").count() == 2


@pytest.mark.parametrize("dry_run", ["perhaps", 0, 0.0, "0", "false", "no", "off", None])
def test_purge_rejects_a_bad_body(world, api, token_for, dry_run):
    # Only JSON `false` deletes: DRF's lenient boolean took 0, "no", "off" as false (found by Schemathesis).
    response = api("POST", url(world.org_a, "purge"), token_for(world.org_a), data={"dry_run": dry_run})
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "VALIDATION_ERROR" and "dry_run" in body["details"]


def test_privacy_commands(world, patient, capsys):
    call_command("privacy_export", world.org_a.pk, str(patient.pk))
    assert '"first_name": "Zoë"' in capsys.readouterr().out
    call_command("privacy_anonymise", world.org_a.pk, str(patient.pk), "--yes")
    patient.refresh_from_db()
    assert patient.anonymised_at is not None
    call_command("privacy_purge", world.org_a.pk)
    assert "dry run" in capsys.readouterr().out
    assert AuditEvent.objects.for_org(world.org_a).filter(actor_label="manage.py").count() == 3
