"""The sync engine end to end against the Cliniko simulator over real HTTP on loopback:
the first import, incremental changes of every kind, the lookback, de-duplication, newest
wins, quarantine, late links, windows that shift under a listing, and faults."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal

import pytest

from clinics.models import Location
from clinics.rls import tenant_scope
from patients.changes import records_changed
from patients.models import Appointment, AppointmentType, Invoice, Patient, Practitioner
from patients.privacy import patient_anonymise
from sync.engine.runner import SyncOptions
from sync.models import QuarantinedRecord, SyncCursor
from sync.pms import base
from sync.pms.cliniko.simulator import FaultPlan

pytestmark = pytest.mark.django_db

MODELS = {
    "businesses": Location,
    "practitioners": Practitioner,
    "appointment_types": AppointmentType,
    "patients": Patient,
    "individual_appointments": Appointment,
    "invoices": Invoice,
}


def held(org, model):
    with tenant_scope(org):
        return model.objects.for_org(org)


def held_ids(org, model) -> set[str]:
    return set(held(org, model).values_list("external_id", flat=True))


def listable_ids(sim, name) -> set[str]:
    """What the simulated account holds and lists (soft-deleted patients have no listing)."""
    ids = set(sim.store.ids(name))
    if name == "patients":
        ids = {i for i in ids if not sim.store.record(name, i).get("deleted_at")}
    return ids


def snapshot(org) -> dict[str, list[tuple]]:
    """Every synced row of org, as comparable values (PMS ids, not local ones)."""
    result = {}
    for name, model in MODELS.items():
        fields = [
            f.attname
            for f in model._meta.concrete_fields
            if f.attname not in ("id", "last_synced_at", "organization_id") and not f.is_relation
        ]
        related = [f.name for f in model._meta.concrete_fields if f.is_relation and f.name != "organization"]
        values = fields + [f"{name}__external_id" for name in related]
        result[name] = sorted(held(org, model).values_list(*values))
    return result


def minimum_requests(sim) -> int:
    """Sum over resources of ceil(records / 100), plus the two listings Cliniko adds: inactive
    practitioners, and billable items (appointment types' prices)."""
    counts = sim.store.counts()
    return sum(math.ceil(counts[name] / 100) for name in MODELS) + 2


def test_first_sync_imports_the_whole_history(world, sim, run_sync):
    run = run_sync()
    assert run.status == "completed" and run.error_code == ""
    for name, model in MODELS.items():
        assert held_ids(world.org_a, model) == listable_ids(sim, name), name
    # Archived, cancelled and inactive rows are fetched explicitly, not lost.
    assert held(world.org_a, Appointment).filter(cancelled_at__isnull=False).exists()
    assert held(world.org_a, Practitioner).filter(active=False).exists()
    assert held(world.org_a, AppointmentType).filter(archived_at__isnull=False).exists()
    # Foreign keys resolved from link objects; PMS ids kept as strings; money as Decimal.
    appointment = held(world.org_a, Appointment).select_related("patient").first()
    assert appointment.patient.external_id == appointment.pms_refs["patient"]
    assert held(world.org_a, Appointment).filter(patient__isnull=True).count() == 0
    invoice = held(world.org_a, Invoice).exclude(total_amount=0).first()
    assert isinstance(invoice.total_amount, Decimal)
    counts = run.stats["appointment"]
    assert counts["fetched"] == counts["created"] == len(sim.store.ids("individual_appointments"))
    # Every page needed, plus the inactive practitioners' and the prices' listings.
    assert run.requests == sim.stats.requests == minimum_requests(sim)
    assert run.rate_limited == 0 and run.retries == 0 and run.pages == run.requests - 1


def test_incremental_sync_with_nothing_changed_costs_one_request_per_listing(world, sim, run_sync):
    run_sync()
    first = snapshot(world.org_a)
    sim.stats.reset()
    run = run_sync()
    assert run.status == "completed"
    # One page per listing: location, 2 practitioners, type + prices, patient, appointment, invoice.
    assert sim.stats.requests == run.requests == 8
    assert all(c["created"] == c["updated"] == 0 for c in run.stats.values())
    assert snapshot(world.org_a) == first


def test_incremental_sync_applies_every_kind_of_change(world, sim, run_sync):
    run_sync()
    store = sim.store
    sim.clock.advance(3600)
    patient_ids = store.ids("patients")
    new_patient = store.add_patient(first_name="Nova", last_name="Newcomer", email="nova@example.com")
    booked = store.add_appointment(new_patient["id"])
    store.edit("patients", patient_ids[0], first_name="Edited", email="EDITED@Example.com")
    open_appointments = [
        a
        for a in store.ids("individual_appointments")
        if not store.record("individual_appointments", a).get("cancelled_at")
        and not store.record("individual_appointments", a).get("archived_at")
    ]
    store.cancel_appointment(open_appointments[0], reason=30)
    store.archive("individual_appointments", open_appointments[1])
    store.archive("patients", patient_ids[1])
    merged = store.merge_patients(patient_ids[2], patient_ids[3])
    store.soft_delete("invoices", store.ids("invoices")[0])
    leaving = store.ids("practitioners")[0]
    store.deactivate_practitioner(leaving)
    sim.stats.reset()

    run = run_sync()

    assert run.status == "completed"
    org = world.org_a
    assert held(org, Patient).get(external_id=new_patient["id"]).first_name == "Nova"
    assert held(org, Appointment).get(external_id=booked["id"]).patient.external_id == new_patient["id"]
    edited = held(org, Patient).get(external_id=patient_ids[0])
    assert (edited.first_name, edited.email_normalized) == ("Edited", "edited@example.com")
    cancelled = held(org, Appointment).get(external_id=open_appointments[0])
    assert cancelled.cancelled_at is not None and cancelled.cancellation_reason == "Sick"
    assert held(org, Appointment).get(external_id=open_appointments[1]).archived_at is not None
    assert held(org, Patient).get(external_id=patient_ids[1]).archived_at is not None
    loser = held(org, Patient).get(external_id=patient_ids[2])
    assert loser.merged_at is not None and loser.pms_refs["merged_with_patient"] == patient_ids[3]
    moved = merged["moved"]["individual_appointments"]
    assert held(org, Appointment).filter(patient__external_id=patient_ids[3]).count() >= moved > 0
    assert not held(org, Appointment).filter(patient__external_id=patient_ids[2]).exists()
    assert held(org, Invoice).get(external_id=store.ids("invoices")[0]).deleted_at is not None
    assert held(org, Practitioner).get(external_id=leaving).active is False
    assert run.stats["patient"]["created"] == 1 and run.stats["patient"]["archived"] >= 2
    assert run.stats["appointment"]["created"] == 1 and run.stats["appointment"]["archived"] == 1
    assert snapshot(org) == snapshot_of_a_fresh_import(world, sim)


def snapshot_of_a_fresh_import(world, sim):
    """The same account imported from scratch into org B (what "equal" must mean)."""
    from clinics.services import pms_connection_set
    from sync import services
    from sync.tests.conftest import FAST_OPTIONS, fast_adapter_options

    with tenant_scope(world.org_b):
        connection = pms_connection_set(
            world.org_b, kind="cliniko", api_key=sim.api_key, base_url=sim.base_url
        )
    run, _ = services.sync_run_now(
        world.org_b, connection=connection, options=FAST_OPTIONS, adapter_options=fast_adapter_options(sim)
    )
    assert run.status == "completed"
    return snapshot(world.org_b)


def test_a_change_committed_late_is_read_if_its_stamp_is_after_the_watermark(world, sim, run_sync):
    """The window of each listing ends two minutes before now, and the watermark is the newest
    `updated_at` stored. A change that becomes visible late, stamped before the last sync ran,
    is still read as long as its stamp is after what was stored."""
    run_sync()
    with tenant_scope(world.org_a):
        watermark = SyncCursor.objects.get(resource="patient").watermark
    patient, other = sim.store.ids("patients")[5:7]
    late = (watermark + timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sim.store.edit("patients", patient, first_name="Latecomer", updated_at=late)
    # Stamped before the watermark: a delay beyond any margin; only a full pass finds it.
    too_late = (watermark - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sim.store.edit("patients", other, first_name="Ancient", updated_at=too_late)

    run = run_sync()
    assert held(world.org_a, Patient).get(external_id=patient).first_name == "Latecomer"
    assert held(world.org_a, Patient).get(external_id=other).first_name != "Ancient"
    assert run.stats["patient"] | {"listed_total": 0} == {
        "fetched": 1,
        "created": 0,
        "updated": 1,
        "unchanged": 0,
        "archived": 0,
        "deleted": 0,
        "failed": 0,
        "listed_total": 0,
    }
    full = run_sync("full")
    assert held(world.org_a, Patient).get(external_id=other).first_name == "Ancient"
    assert full.stats["patient"]["updated"] == 1


def test_a_watermark_never_passes_the_window(world, sim, run_sync):
    """A record stamped in the future (a PMS clock far ahead) is not listed, and cannot push
    the watermark past changes that come after it."""
    run_sync()
    patients = sim.store.ids("patients")
    sim.store.edit("patients", patients[0], first_name="Future", updated_at="2099-01-01T00:00:00Z")
    run_sync()
    sim.store.edit("patients", patients[1], first_name="Present")
    run_sync()
    assert held(world.org_a, Patient).get(external_id=patients[1]).first_name == "Present"
    with tenant_scope(world.org_a):
        assert SyncCursor.objects.get(resource="patient").watermark.year == 2026


def test_reading_records_again_changes_nothing(world, sim, run_sync):
    first_run = run_sync()
    first = snapshot(world.org_a)
    again = run_sync("full")  # every record read a second time
    assert again.stats["appointment"]["fetched"] == first_run.stats["appointment"]["fetched"]
    assert all(c["created"] == c["updated"] == c["deleted"] == 0 for c in again.stats.values())
    assert snapshot(world.org_a) == first
    assert held(world.org_a, Patient).count() == len(listable_ids(sim, "patients"))


def test_an_older_updated_at_never_overwrites_a_newer_row(world, sim, run_sync):
    run_sync()
    patient_id = sim.store.ids("patients")[0]
    stored = held(world.org_a, Patient).get(external_id=patient_id)
    with tenant_scope(world.org_a):
        Patient.objects.filter(pk=stored.pk).update(
            first_name="Newer", pms_updated_at=stored.pms_updated_at + timedelta(days=1)
        )
    run = run_sync("full")
    assert held(world.org_a, Patient).get(external_id=patient_id).first_name == "Newer"
    assert run.stats["patient"]["updated"] == 0


def test_a_sync_never_writes_back_an_anonymised_patients_details(world, sim, run_sync):
    run_sync()
    patient_id = sim.store.ids("patients")[0]
    with tenant_scope(world.org_a):
        patient_anonymise(world.org_a, patient_id=held(world.org_a, Patient).get(external_id=patient_id).pk)
    sim.clock.advance(60)
    sim.store.edit("patients", patient_id, first_name="Real", email="real@example.com")
    run_sync()
    patient = held(world.org_a, Patient).get(external_id=patient_id)
    assert (patient.first_name, patient.email, patient.anonymised_at is not None) == ("Anonymised", "", True)
    assert (
        patient.pms_updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        == sim.store.record("patients", patient_id)["updated_at"]
    )


def test_a_bad_record_is_quarantined_and_the_sync_goes_on(world, sim, run_sync):
    appointments = sim.store.ids("individual_appointments")
    sim.store.edit("individual_appointments", appointments[3], ends_at="2020-01-01T00:00:00Z")
    sim.store.edit("patients", sim.store.ids("patients")[4], first_name="x" * 150)
    run = run_sync()
    assert run.status == "completed"
    assert run.stats["appointment"]["failed"] == 1 and run.stats["patient"]["failed"] == 1
    with tenant_scope(world.org_a):
        quarantined = {q.external_id: q for q in QuarantinedRecord.objects.for_org(world.org_a)}
    assert set(quarantined) == {appointments[3], sim.store.ids("patients")[4]}
    assert quarantined[appointments[3]].payload["ends_at"] == "2020-01-01T00:00:00Z"
    assert "ends before it starts" in quarantined[appointments[3]].error
    assert held(world.org_a, Appointment).count() == len(appointments) - 1
    # Mended in the PMS: the next sync stores it and clears the quarantine entry.
    sim.clock.advance(60)
    sim.store.edit(
        "individual_appointments",
        appointments[3],
        starts_at="2026-12-03T01:00:00Z",
        ends_at="2026-12-03T01:30:00Z",
    )
    run_sync()
    with tenant_scope(world.org_a):
        assert set(QuarantinedRecord.objects.for_org(world.org_a).values_list("external_id", flat=True)) == {
            sim.store.ids("patients")[4]
        }
    assert held(world.org_a, Appointment).count() == len(appointments)


def test_rows_synced_before_what_they_point_at_are_linked_when_it_arrives(world, sim, run_sync):
    run = run_sync(resources=[base.APPOINTMENT, base.INVOICE])
    assert run.status == "completed"
    assert held(world.org_a, Appointment).filter(patient__isnull=True).count() == len(
        sim.store.ids("individual_appointments")
    )
    changes = []
    records_changed.connect(lambda change, **kw: changes.append(change), weak=False, dispatch_uid="t-link")
    try:
        run_sync()
    finally:
        records_changed.disconnect(dispatch_uid="t-link")
    appointments = held(world.org_a, Appointment)
    assert appointments.filter(patient__isnull=True).count() == 0
    assert appointments.filter(practitioner__isnull=True).count() == 0
    assert (
        held(world.org_a, Invoice)
        .filter(appointment__isnull=True)
        .exclude(pms_refs__appointment=None)
        .count()
        == 0
    )
    assert snapshot(world.org_a) == snapshot_of_a_fresh_import(world, sim)


def test_each_committed_page_announces_what_changed(world, sim, run_sync, django_capture_on_commit_callbacks):
    changes = []
    records_changed.connect(lambda change, **kw: changes.append(change), weak=False, dispatch_uid="t-ann")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run = run_sync()
    finally:
        records_changed.disconnect(dispatch_uid="t-ann")
    pages = [c for c in changes if not c.final]
    assert len(pages) == run.pages
    patient_pages = [c for c in pages if c.resource == "patient"]
    assert sum(len(c.created) for c in patient_pages) == 60
    touched = {pid for c in pages if c.resource == "appointment" for pid in c.patient_ids}
    assert touched == set(held(world.org_a, Appointment).values_list("patient_id", flat=True))
    assert changes[-1].final and changes[-1].run_id == run.pk and changes[-1].summary["status"] == "completed"


def test_a_record_changing_mid_listing_does_not_make_another_one_skipped(world, sim, run_sync):
    """Page-number paging: when a row of an already-read page changes, every later row moves
    up one place. The shrinking window is noticed and the listing starts again from what is
    known complete, so the row that crossed the page boundary is still read."""
    run_sync()
    with tenant_scope(world.org_a):
        Appointment.objects.for_org(world.org_a).delete()
        SyncCursor.objects.filter(resource="appointment").update(watermark=None)
    original = sim.store.list_page
    calls = {"n": 0}

    def list_page(resource, suffix, **kwargs):
        if resource == "individual_appointments" and kwargs["page"] == 2 and not calls["n"]:
            calls["n"] += 1
            first_row = original(resource, suffix, **{**kwargs, "page": 1})
            import json

            sim.clock.advance(60)
            sim.store.edit("individual_appointments", json.loads(first_row.items[0])["id"], notes="touched")
        return original(resource, suffix, **kwargs)

    sim.store.list_page = list_page
    sim.stats.reset()
    run = run_sync()
    assert calls["n"] == 1
    assert held_ids(world.org_a, Appointment) == set(sim.store.ids("individual_appointments"))
    assert any(e["event"] == "resource_completed" for e in run.log)
    listing_pages = math.ceil(len(sim.store.ids("individual_appointments")) / 100)
    # The restart cost two requests: the rest of the last complete row's second, then the page again.
    assert sim.stats.by_route["/v1/individual_appointments"] == listing_pages + 2


def test_twenty_percent_mixed_faults_end_in_the_same_rows(world, sim, run_sync):
    sim.faults.configure(FaultPlan.spread(0.2, seed=11, timeout_seconds=3.0))
    faulty = run_sync(
        adapter_options={"read_timeout": 0.5},
        options=SyncOptions(resource_retry_delay=0.01, resource_attempts=5, heartbeat_seconds=0.5),
    )
    assert faulty.status == "completed", faulty.log
    assert faulty.retries > 0 and sum(sim.faults.injected.values()) > 0
    sim.faults.clear()
    assert snapshot(world.org_a) == snapshot_of_a_fresh_import(world, sim)
