"""What the sync and the profile refresh announce becomes events: unit by unit, then a real sync
against the simulated Cliniko account."""

from model_bakery import baker

from clinics.rls import tenant_scope
from patients.changes import RecordsChanged, records_changed_announce
from patients.models import Patient
from realtime import hooks
from realtime.models import Event
from sync.signals import sync_run_announce


def logged(org):
    with tenant_scope(org):
        return [(e.seq, e.type, e.payload) for e in Event.objects.for_org(org).order_by("seq")]


def run(org, status="running", **extra):
    return {"id": 9, "organization_id": org.pk, "status": status, "stats": {}, **extra}


def test_run_announcements_become_sync_events(world, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        sync_run_announce("queued", run(world.org_a, "queued"))
        sync_run_announce("started", run(world.org_a))
        sync_run_announce("progress", run(world.org_a, pages=1))
        sync_run_announce("finished", run(world.org_a, "partial"))
        sync_run_announce("finished", run(world.org_a, "failed", error_code="PMS_AUTH_FAILED"))
    events = logged(world.org_a)
    assert [t for _, t, _ in events] == ["sync_started", "sync_progress", "sync_completed", "sync_failed"]
    assert events[2][2]["run"]["status"] == "partial"
    assert events[3][2]["run"]["error_code"] == "PMS_AUTH_FAILED"
    assert logged(world.org_b) == []


def test_appointment_pages_and_the_end_of_a_run_become_change_events(
    world, sent, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(hooks, "ID_CAP", 3)
    patients = [
        baker.make(Patient, organization=world.org_a, pms="cliniko", external_id=f"p{n}").pk for n in range(5)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        records_changed_announce(
            RecordsChanged(
                world.org_a.pk,
                "sync",
                resource="patient",
                created=tuple(patients),
                patient_ids=tuple(patients),
                run_id=4,
            )
        )
        records_changed_announce(
            RecordsChanged(
                world.org_a.pk,
                "sync",
                resource="appointment",
                created=(11, 12),
                updated=(13,),
                patient_ids=(patients[0],),
                run_id=4,
            )
        )
        records_changed_announce(RecordsChanged(world.org_a.pk, "sync", run_id=4, final=True))
    events = logged(world.org_a)
    assert [t for _, t, _ in events] == ["appointments_changed", "profiles_changed", "metrics_updated"]
    assert [seq for seq, _, _ in events] == [1, 2, 3]
    appointments = events[0][2]
    assert (appointments["created"], appointments["updated"], appointments["removed"]) == (2, 1, 0)
    assert appointments["appointments"] == {"count": 3, "ids": [11, 12, 13], "truncated": False}
    assert events[1][2]["patients"] == {"count": 5, "ids": sorted(patients)[:3], "truncated": True}
    metrics = events[2][2]
    # The profiles were refreshed by the receivers before this one: the summaries count them.
    assert metrics["profiles"]["total_patients"] == 5
    assert metrics["dashboard"]["total_patients"] == 5
    assert metrics["run_id"] == 4 and "data_as_of" in metrics
    # A run that touched nobody still says its metrics are current, and no profiles changed.
    with django_capture_on_commit_callbacks(execute=True):
        records_changed_announce(RecordsChanged(world.org_a.pk, "sync", run_id=5, final=True))
    assert [t for _, t, _ in logged(world.org_a)][3:] == ["metrics_updated"]


def test_a_real_sync_publishes_its_story_in_order(world, run_sync, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = run_sync()
    assert result.status == "completed"
    events = logged(world.org_a)
    types = [t for _, t, _ in events]
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
    assert types[0] == "sync_started" and types[-1] == "sync_completed"
    assert "appointments_changed" in types and "sync_progress" in types
    assert types.index("profiles_changed") < types.index("metrics_updated") < types.index("sync_completed")
    assert events[-1][2]["run"]["id"] == result.pk
    with tenant_scope(world.org_a):
        held = Patient.objects.for_org(world.org_a).count()
    profiles = next(p for _, t, p in events if t == "profiles_changed")
    assert profiles["patients"]["count"] == held
    metrics = next(p for _, t, p in events if t == "metrics_updated")
    assert metrics["profiles"]["total_patients"] == held
    # Every event went to the organization's group after its commit, in order.
    assert [m["seq"] for _, m in sent] == [seq for seq, _, _ in events]
    assert logged(world.org_b) == []
