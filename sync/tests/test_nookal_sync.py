"""A Nookal connection through the same engine: the adapter interface is all it needs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clinics.rls import tenant_scope
from clinics.services import pms_connection_set
from patients.models import Appointment, Patient
from sync import services
from sync.pms.nookal.tests.conftest import nookal_simulator, nookal_simulator_factory  # noqa: F401
from sync.pms.pacing import TokenBucket, credential_key
from sync.tests.conftest import FAST_OPTIONS

pytestmark = pytest.mark.django_db


def run(world, sim, connection, mode="incremental"):
    pacer = TokenBucket(credential_key(sim.api_key, namespace="nookal"), rate_per_minute=600_000, burst=1_000)
    result, created = services.sync_run_now(
        world.org_a,
        connection=connection,
        mode=mode,
        options=FAST_OPTIONS,
        adapter_options={"pacer": pacer, "backoff_base": 0.001, "backoff_cap": 0.01},
        clock=lambda: datetime(2030, 1, 1, tzinfo=UTC),
    )
    assert created
    return result


def test_a_nookal_clinic_syncs_and_changes_arrive(world, nookal_simulator):  # noqa: F811
    sim = nookal_simulator
    with tenant_scope(world.org_a):
        connection = pms_connection_set(
            world.org_a, kind="nookal", api_key=sim.api_key, base_url=sim.base_url
        )
    first = run(world, sim, connection)
    assert first.status == "completed", first.log
    with tenant_scope(world.org_a):
        assert set(Patient.objects.for_org(world.org_a).values_list("external_id", flat=True)) == set(
            sim.store.ids("getPatients")
        )
        assert Appointment.objects.for_org(world.org_a).filter(patient__isnull=True).count() == 0
        assert Appointment.objects.for_org(world.org_a).count() == len(sim.store.ids("getAppointments"))
    assert "invoice" not in first.stats  # not a Nookal capability here
    sim.store.edit("getPatients", "3", modified=datetime(2029, 6, 1, tzinfo=UTC), FirstName="Edited")
    second = run(world, sim, connection)
    assert second.status == "completed" and second.stats["patient"]["updated"] == 1
    with tenant_scope(world.org_a):
        assert Patient.objects.for_org(world.org_a).get(external_id="3").first_name == "Edited"
    # A full pass cannot confirm deletions by id in Nookal: nothing is ever removed.
    full = run(world, sim, connection, mode="full")
    assert full.status == "completed" and all(not r["capped"] for r in full.reconciliation.values())
