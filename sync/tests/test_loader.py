from datetime import date
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Sum

from clinics.models import Location, Membership, Organization, Role
from patients.models import Appointment, AppointmentType, Invoice, Patient, Practitioner
from patients.outcomes import Outcome
from sync.demo import DEMO_ORG_ID, demo_clinic_ensure
from sync.loader import OrganizationNotEmpty, synthetic_clinic_load
from sync.synthetic import ClinicSpec, generate_clinic

TODAY = date(2026, 11, 27)


def load(org, clinic):
    return synthetic_clinic_load(org, clinic=clinic, batch_size=40)


@pytest.fixture
def clinic():
    return generate_clinic(ClinicSpec(seed=7, patients=120, today=TODAY, time_zone="Australia/Sydney"))


def test_loads_every_generated_record_with_its_relations(world, clinic):
    bundles = list(clinic.iter_patients())
    result = load(world.org_a, clinic)
    org = world.org_a
    assert result.patients == Patient.objects.for_org(org).count() == 120
    assert (
        result.appointments
        == Appointment.objects.for_org(org).count()
        == sum(len(b.appointments) for b in bundles)
    )
    assert result.invoices == Invoice.objects.for_org(org).count() == sum(len(b.invoices) for b in bundles)
    assert Location.objects.for_org(org).count() == len(clinic.businesses)
    assert Practitioner.objects.for_org(org).count() == len(clinic.practitioners)
    # Every appointment found its patient, practitioner, type and location.
    assert not Appointment.objects.for_org(org).filter(patient__isnull=True).exists()
    assert not Appointment.objects.for_org(org).filter(practitioner__isnull=True).exists()
    assert not Appointment.objects.for_org(org).filter(appointment_type__isnull=True).exists()
    assert not Appointment.objects.for_org(org).filter(location__isnull=True).exists()
    # Foreign keys point inside the tenant.
    assert not Appointment.objects.for_org(org).exclude(patient__organization=org).exists()
    # Invoices keep exact money and point at their appointments.
    first = bundles[0].invoices[0] if bundles[0].invoices else next(i for b in bundles for i in b.invoices)
    stored = Invoice.objects.for_org(org).get(external_id=str(first["id"]))
    assert stored.total_amount == Decimal(first["total_amount"])
    assert Invoice.objects.for_org(org).filter(appointment__isnull=False).count() > 0.9 * result.invoices
    # Nothing landed in the other tenant.
    assert not Patient.objects.for_org(world.org_b).exists()


def test_loaded_prices_and_normalised_contacts(world, clinic):
    load(world.org_a, clinic)
    prices = clinic.appointment_type_prices()
    for kind in AppointmentType.objects.for_org(world.org_a):
        assert kind.price == prices.get(kind.external_id)
    with_mobile = Patient.objects.for_org(world.org_a).exclude(mobile_e164="")
    assert with_mobile.count() > 60
    assert all(p.mobile_e164.startswith("+61") for p in with_mobile)
    assert all(p.email_normalized == p.email.strip().casefold() for p in Patient.objects.for_org(world.org_a))


def test_outcomes_of_a_loaded_clinic_are_all_present(world, clinic):
    load(world.org_a, clinic)
    counts = dict(
        Appointment.objects.for_org(world.org_a)
        .current()
        .with_outcome()
        .values_list("outcome")
        .annotate(n=Count("id"))
    )
    assert set(counts) == set(Outcome.ALL)
    assert counts[Outcome.ATTENDED] > counts[Outcome.DNA] > 0


def test_refuses_an_organization_that_already_has_patients(world, clinic):
    load(world.org_a, clinic)
    with pytest.raises(OrganizationNotEmpty):
        load(world.org_a, clinic)
    assert Patient.objects.for_org(world.org_a).count() == 120


def test_same_clinic_loads_into_two_tenants_independently(world, clinic):
    load(world.org_a, clinic)
    load(world.org_b, clinic)
    totals = Invoice.objects.values("organization_id").annotate(total=Sum("total_amount"))
    assert len({row["total"] for row in totals}) == 1 and len(totals) == 2


def test_demo_clinic_is_idempotent_and_makes_an_admin(db, settings, tmp_path):
    settings.STATE_DIR = tmp_path
    first = demo_clinic_ensure(patients=60, today=TODAY)
    assert first.loaded is not None and first.loaded.patients == 60
    second = demo_clinic_ensure(patients=60, today=TODAY)
    assert second.loaded is None
    assert second.admin_password == first.admin_password
    assert Patient.objects.for_org(DEMO_ORG_ID).count() == 60
    membership = Membership.objects.for_org(DEMO_ORG_ID).get(user__username="admin")
    assert membership.role == Role.ADMIN and membership.user.is_superuser
    assert membership.user.check_password(first.admin_password)
    assert (tmp_path / "demo_admin_password").stat().st_mode & 0o077 == 0


def test_demo_clinic_reset_regenerates(db, settings, tmp_path):
    settings.STATE_DIR = tmp_path
    demo_clinic_ensure(patients=60, today=TODAY)
    again = demo_clinic_ensure(patients=80, today=TODAY, reset=True)
    assert again.loaded.patients == 80
    assert Patient.objects.for_org(DEMO_ORG_ID).count() == 80
    assert Organization.objects.filter(pk=DEMO_ORG_ID).count() == 1


def test_demo_command_rejects_an_impossible_size(db, settings, tmp_path):
    settings.STATE_DIR = tmp_path
    with pytest.raises(CommandError, match="50"):
        call_command("demo_clinic", "--patients", "10")
    with pytest.raises(CommandError, match="50,000|50000"):
        call_command("demo_clinic", "--patients", "60000")
    assert not Organization.objects.filter(pk=DEMO_ORG_ID).exists()


def test_demo_command_reports_progress_and_login(db, settings, tmp_path, capsys):
    settings.STATE_DIR = tmp_path
    call_command("demo_clinic", "--patients", "50")
    out = capsys.readouterr().out
    assert "Loaded demo clinic" in out and "Admin login: admin / " in out
    call_command("demo_clinic", "--patients", "50")
    assert "already loaded" in capsys.readouterr().out
