"""Full passes find hard deletions: each candidate is looked up by id before it goes, and a
reconciliation that would remove more than the cap removes nothing and says so."""

from __future__ import annotations

import pytest

from clinics.models import Location
from clinics.rls import tenant_scope
from patients.models import Appointment, Invoice, Patient
from sync.engine.reconcile import removal_allowance
from sync.engine.runner import SyncOptions
from sync.models import ReconciliationSeen, SyncCursor

pytestmark = pytest.mark.django_db


def held(org, model):
    with tenant_scope(org):
        return model.objects.for_org(org)


def test_a_full_sync_removes_what_the_pms_deleted_for_good(world, sim, run_sync):
    run_sync()
    patients = sim.store.ids("patients")
    gone = patients[10]
    with tenant_scope(world.org_a):
        their_appointments = (
            Appointment.objects.for_org(world.org_a).filter(patient__external_id=gone).count()
        )
    removed = sim.store.hard_delete("patients", gone)  # with its appointments and invoices
    stray = sim.store.ids("invoices")[0]
    sim.store.hard_delete("invoices", stray)
    assert their_appointments > 0 and removed > 1

    incremental = run_sync()
    assert held(world.org_a, Patient).filter(external_id=gone).exists()  # a hard delete leaves no trace
    assert incremental.reconciliation == {}

    full = run_sync("full")
    assert full.status == "completed"
    assert not held(world.org_a, Patient).filter(external_id=gone).exists()
    assert not held(world.org_a, Invoice).filter(external_id=stray).exists()
    assert set(held(world.org_a, Appointment).values_list("external_id", flat=True)) == set(
        sim.store.ids("individual_appointments")
    )
    assert full.reconciliation["patient"]["deleted"] == 1
    assert full.stats["patient"]["deleted"] == 1 and full.stats["invoice"]["deleted"] >= 1
    with tenant_scope(world.org_a):
        assert not ReconciliationSeen.objects.for_org(world.org_a).exists()  # forgotten after the pass
        assert all(c.last_full_at is not None for c in SyncCursor.objects.for_org(world.org_a))


def test_a_row_that_changed_during_the_pass_is_looked_up_not_removed(world, sim, run_sync, monkeypatch):
    run_sync()
    patient = sim.store.ids("patients")[7]
    # Changed after the pass's window closed: the listing does not show it, the lookup does.
    sim.clock.advance(3600)
    sim.store.edit("patients", patient, first_name="Moved", updated_at="2099-01-01T00:00:00Z")
    sim.stats.reset()
    run = run_sync("full")
    assert run.status == "completed"
    outcome = run.reconciliation["patient"]
    assert (outcome["candidates"], outcome["still_present"], outcome["deleted"]) == (1, 1, 0)
    assert held(world.org_a, Patient).get(external_id=patient).first_name == "Moved"
    assert sim.stats.by_route["/v1/patients"] == 1 + 1  # one page, one lookup


def test_above_the_cap_nothing_is_removed_and_the_run_is_flagged(world, sim, run_sync):
    run_sync()
    patients = sim.store.ids("patients")
    for external_id in patients[:6]:  # 10% of 60, above the 5% cap (3)
        sim.store.hard_delete("patients", external_id, cascade=False)
    run = run_sync("full")
    assert run.status == "partial" and run.error_code == "RECONCILIATION_CAPPED"
    assert "6 of 60 patient rows" in run.error_message and "nothing was removed" in run.error_message
    outcome = run.reconciliation["patient"]
    assert outcome["capped"] and outcome["deleted"] == 0 and outcome["candidates"] == 6
    assert held(world.org_a, Patient).count() == 60
    # An operator who has checked allows it once.
    allowed = run_sync("full", options=SyncOptions(resource_retry_delay=0.01, allow_mass_delete=True))
    assert allowed.status == "completed" and allowed.reconciliation["patient"]["deleted"] == 6
    assert held(world.org_a, Patient).count() == 54


def test_an_empty_listing_never_empties_a_table(world, sim, run_sync):
    run_sync()
    for external_id in sim.store.ids("businesses"):
        sim.store.hard_delete("businesses", external_id)
    run = run_sync("full", options=SyncOptions(resource_retry_delay=0.01, allow_mass_delete=True))
    with tenant_scope(world.org_a):
        assert Location.objects.for_org(world.org_a).count() == 1
    assert run.reconciliation["location"]["capped"] and run.reconciliation["location"]["deleted"] == 0
    assert run.status == "partial" and "listed none of the 1 location rows" in run.error_message


def test_removal_allowance():
    assert removal_allowance(60, cap=0.05) == 3
    assert removal_allowance(10, cap=0.05) == 1  # a lone deletion in a small table
    assert removal_allowance(200_000, cap=0.05) == 10_000


def test_removing_a_patient_keeps_the_appointments_the_pms_still_lists(world, sim, run_sync):
    """Cliniko stops listing a patient it deleted (patients have no deleted filter), while
    their appointments stay listed: the patient goes, the appointments stay, unlinked."""
    run_sync()
    patient = sim.store.ids("patients")[12]
    mine = set(
        held(world.org_a, Appointment)
        .filter(patient__external_id=patient)
        .values_list("external_id", flat=True)
    )
    invoices = held(world.org_a, Invoice).filter(patient__external_id=patient).count()
    sim.store.soft_delete("patients", patient)
    run = run_sync("full")
    assert run.reconciliation["patient"]["deleted"] == 1 and mine
    assert not held(world.org_a, Patient).filter(external_id=patient).exists()
    kept = held(world.org_a, Appointment).filter(external_id__in=mine)
    assert kept.count() == len(mine) and not kept.filter(patient__isnull=False).exists()
    assert all(a.pms_refs["patient"] == patient for a in kept)  # relinked if the patient returns
    assert held(world.org_a, Invoice).filter(pms_refs__patient=patient).count() == invoices
    assert run.stats["appointment"]["deleted"] == 0
