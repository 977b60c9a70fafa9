"""Whole syncs as the product runs them: connected as the application role (row-level
security applies), every unit of work its own committed transaction. The rest of the suite
connects as a superuser inside one test transaction, where neither wall can be seen."""

from __future__ import annotations

import pytest
from django.db import connection as db

from clinics.rls import tenant_scope
from patients.models import Appointment, Patient, PatientProfile, ProfileBaseline
from routiq.db_roles import APP_ROLE
from sync.models import QuarantinedRecord, SyncRun

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def as_app_role(world, connection, app_role):
    with db.cursor() as cursor:
        cursor.execute(f"SET ROLE {APP_ROLE}")  # the session's role for every transaction that follows
    yield
    with db.cursor() as cursor:
        cursor.execute("RESET ROLE")


def test_syncs_under_row_level_security_as_the_application_role(world, sim, run_sync, as_app_role):
    sim.store.edit("patients", sim.store.ids("patients")[0], first_name="q" * 150)  # quarantined
    first = run_sync()
    assert first.status == "completed", (first.error_code, first.error_message)
    with tenant_scope(world.org_a):
        assert Patient.objects.count() == 59 and Appointment.objects.exists()
        assert QuarantinedRecord.objects.count() == 1
        # The run's end announced its changes and the profiles followed (the whole clinic, first time).
        assert PatientProfile.objects.count() == 59 and ProfileBaseline.objects.exists()
    sim.store.edit("patients", sim.store.ids("patients")[0], first_name="Mended")
    sim.store.hard_delete("invoices", sim.store.ids("invoices")[0])
    second = run_sync("full")
    assert second.status == "completed", (second.error_code, second.error_message)
    assert second.reconciliation["invoice"]["deleted"] == 1
    with tenant_scope(world.org_a):
        assert Patient.objects.count() == 60 and not QuarantinedRecord.objects.exists()
        mended = Patient.objects.get(first_name="Mended")
        assert PatientProfile.objects.filter(patient=mended).exists()
        assert SyncRun.objects.filter(status="completed").count() == 2
    with tenant_scope(world.org_b):
        assert not Patient.objects.exists() and not SyncRun.objects.exists()  # the other tenant sees nothing
