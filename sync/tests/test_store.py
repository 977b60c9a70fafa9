"""The page writer on payloads a PMS should never send: each is quarantined with its raw
payload, never fatal to the page, and never released while it is still refused."""

from __future__ import annotations

import pytest
from django.utils import timezone

from clinics.rls import tenant_scope
from patients.models import Appointment, Patient
from sync.engine.store import PageWriter
from sync.models import QuarantinedRecord
from sync.pms import base

pytestmark = pytest.mark.django_db


@pytest.fixture
def writer(world, sim, connection):
    with tenant_scope(world.org_a):
        adapter = base.adapter_for(connection)
    return PageWriter(
        organization=world.org_a, connection=connection, adapter=adapter, run_id=None, now=timezone.now()
    )


def patient_payload(sim, index=0, **changes):
    return {**sim.store.record("patients", sim.store.ids("patients")[index]), **changes}


def test_odd_payloads_are_quarantined_and_the_rest_of_the_page_is_stored(world, sim, writer):
    odd = [
        None,
        "not a record",
        patient_payload(sim, 1, merged_with_patient={"links": "not-an-object"}),
        patient_payload(sim, 2, updated_at="yesterday"),
    ]
    good = patient_payload(sim, 3)
    with tenant_scope(world.org_a):
        result = writer.write("patient", [*odd, good])
        assert result.failed == 4 and len(result.created) == 1
        assert Patient.objects.for_org(world.org_a).get().external_id == good["id"]
        errors = dict(QuarantinedRecord.objects.for_org(world.org_a).values_list("external_id", "error"))
    assert errors[odd[2]["id"]] == "unreadable record (AttributeError)"
    assert "not a timestamp" in errors[odd[3]["id"]]
    assert errors[""] in {"unreadable record (AttributeError)", "unreadable record (TypeError)"}


def test_nul_characters_are_dropped_not_fatal(world, sim, writer):
    payload = patient_payload(sim, 0, first_name="Jo\x00an", notes="a\x00b")
    with tenant_scope(world.org_a):
        result = writer.write("patient", [payload])
        assert result.failed == 0
        assert Patient.objects.for_org(world.org_a).get().first_name == "Joan"


def test_a_record_the_database_refuses_stays_quarantined_until_mended(world, sim, writer):
    appointment = sim.store.record("individual_appointments", sim.store.ids("individual_appointments")[0])
    refused = {**appointment, "cancellation_reason": -5}  # a negative code breaks the column's check
    others = [
        sim.store.record("individual_appointments", i) for i in sim.store.ids("individual_appointments")[1:4]
    ]
    with tenant_scope(world.org_a):
        result = writer.write("appointment", [refused, *others])
        assert result.failed == 1 and len(result.created) == 3
        entry = QuarantinedRecord.objects.for_org(world.org_a).get()
        assert entry.external_id == appointment["id"] and entry.payload["cancellation_reason"] == -5
        assert entry.error.startswith("the database refused the record")
        result = writer.write("appointment", [refused])  # read again, still refused
        assert QuarantinedRecord.objects.for_org(world.org_a).get().times_seen == 2
        writer.write("appointment", [appointment])  # mended in the PMS
        assert not QuarantinedRecord.objects.for_org(world.org_a).exists()
        assert Appointment.objects.for_org(world.org_a).count() == 4


def test_a_record_without_updated_at_never_overwrites_one_with_it(world, sim, writer):
    payload = patient_payload(sim, 0)
    with tenant_scope(world.org_a):
        writer.write("patient", [payload])
        result = writer.write("patient", [{**payload, "first_name": "Stale", "updated_at": None}])
        assert result.counts()["unchanged"] == 1
        assert Patient.objects.for_org(world.org_a).get().first_name == payload["first_name"]


def test_a_sync_leaves_the_tables_it_filled_with_planner_statistics(world, sim, run_sync):
    from django.db import DatabaseError, connection, transaction

    run_sync()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reltuples FROM pg_class WHERE relname IN"
            " ('patients_patient', 'patients_appointment', 'patients_invoice')"
        )
        sampled = dict(cursor.fetchall())
    assert (
        sampled["patients_patient"] == 60
        and sampled["patients_appointment"] > 0 < sampled["patients_invoice"]
    )
    with (
        pytest.raises(DatabaseError, match="not a tenant table"),
        transaction.atomic(),
        connection.cursor() as c,
    ):
        c.execute("SELECT routiq_refresh_statistics('auth_user')")
