"""Runs as a whole: one at a time per connection, resuming after a crash, what refused
credentials and an open circuit do, the schedule, and tenant isolation of everything a sync
writes."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone
from django_q.models import Schedule

from clinics.models import ConnectionStatus, PmsConnection
from clinics.rls import tenant_scope
from clinics.services import pms_connection_set
from patients.models import Appointment, Patient
from routiq.db_roles import APP_ROLE
from sync import services
from sync.engine import store
from sync.models import QuarantinedRecord, ReconciliationSeen, SyncCursor, SyncRun
from sync.pms.cliniko.simulator import FaultKind, FaultPlan
from sync.pms.pacing import CircuitBreaker, CircuitState, credential_key
from sync.tests.conftest import FAST_OPTIONS, fast_adapter_options, sim_clock

pytestmark = pytest.mark.django_db

SYNC_TABLES = (SyncRun, SyncCursor, QuarantinedRecord, ReconciliationSeen)


def held(org, model):
    with tenant_scope(org):
        return model.objects.for_org(org)


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the engine catches it, nothing after it runs."""


def test_a_second_trigger_gets_the_active_run_back(world, connection):
    first, created = services.sync_run_request(world.org_a, connection=connection, requested_by="alice")
    again, created_again = services.sync_run_request(world.org_a, connection=connection, mode="full")
    assert created and not created_again and again.pk == first.pk and again.status == "queued"
    assert first.requested_by == "alice" and first.pms == "cliniko"


@pytest.mark.django_db(transaction=True)
def test_concurrent_triggers_make_one_run(world, connection):
    results, errors = [], []
    barrier = threading.Barrier(4)

    def trigger():
        try:
            barrier.wait()
            results.append(services.sync_run_request(world.org_a, connection=connection))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=trigger) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(created for _, created in results) == 1
    assert len({run.pk for run, _ in results}) == 1
    with tenant_scope(world.org_a):
        assert SyncRun.objects.for_org(world.org_a).count() == 1


def test_a_crashed_run_is_taken_over_and_resumes_from_its_last_page(world, sim, connection, monkeypatch):
    real_write = store.PageWriter.write
    written = {"appointment": 0}

    def write_then_die(self, resource, items):
        result = real_write(self, resource, items)
        if resource == "appointment":
            written["appointment"] += 1
            if written["appointment"] == 4:
                raise Killed
        return result

    monkeypatch.setattr(store.PageWriter, "write", write_then_die)
    with pytest.raises(Killed):
        services.sync_run_now(
            world.org_a,
            connection=connection,
            options=FAST_OPTIONS,
            adapter_options=fast_adapter_options(sim),
            clock=sim_clock(sim),
        )
    monkeypatch.setattr(store.PageWriter, "write", real_write)
    with tenant_scope(world.org_a):
        dead = SyncRun.objects.for_org(world.org_a).get()
        cursor = SyncCursor.objects.for_org(world.org_a).get(resource="appointment")
    assert dead.status == "running" and dead.stats["appointment"]["fetched"] == 300  # page 4 rolled back
    assert (
        cursor.in_flight["full"]
        and cursor.in_flight["resume"]["since"]
        and cursor.in_flight["resume"]["after_id"]
    )
    held_before = held(world.org_a, Appointment).count()
    assert held_before == 300

    # Not stale yet: a new trigger gets the (apparently) running one back.
    assert services.sync_run_request(world.org_a, connection=connection)[1] is False
    with tenant_scope(world.org_a):
        SyncRun.objects.filter(pk=dead.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    sim.stats.reset()
    run, created = services.sync_run_now(
        world.org_a,
        connection=connection,
        options=FAST_OPTIONS,
        adapter_options=fast_adapter_options(sim),
        clock=sim_clock(sim),
    )
    assert created and run.status == "completed"
    dead.refresh_from_db()
    assert dead.status == "failed" and dead.error_code == "WORKER_LOST"
    assert set(held(world.org_a, Appointment).values_list("external_id", flat=True)) == set(
        sim.store.ids("individual_appointments")
    )
    # Only the rest of the listing was read: pages 4 onwards plus at most one page again.
    pages = -(-len(sim.store.ids("individual_appointments")) // 100)
    assert sim.stats.by_route["/v1/individual_appointments"] <= pages - 3 + 1
    assert run.stats["appointment"]["created"] == len(sim.store.ids("individual_appointments")) - 300


def test_refused_credentials_fail_the_run_and_flag_the_connection_without_deleting(world, sim, run_sync):
    run_sync()
    held_patients = held(world.org_a, Patient).count()
    sim._users.clear()  # the clinic revoked the key
    sim.stats.reset()
    run = run_sync("full")
    assert run.status == "failed" and run.error_code == "PMS_AUTH_FAILED"
    assert sim.stats.requests == 1  # permanent: not retried, and the run stopped
    with tenant_scope(world.org_a):
        connection = PmsConnection.objects.for_org(world.org_a).get()
    assert connection.status == ConnectionStatus.NEEDS_ATTENTION and "refused" in connection.status_detail
    assert sim.api_key not in connection.status_detail
    assert held(world.org_a, Patient).count() == held_patients
    # The scheduler leaves it alone until someone fixes the credentials.
    assert services.sync_scheduled_run(connection.pk) is None


def test_an_open_circuit_stops_the_run_and_is_shared(world, sim, run_sync):
    run_sync()
    sim.faults.configure(FaultPlan(rates={FaultKind.SERVER_ERROR: 1.0}))
    run = run_sync()
    assert run.status == "failed" and run.error_code == "PMS_UNAVAILABLE"
    assert "circuit" in run.error_message
    breaker = CircuitBreaker(credential_key(sim.api_key, namespace="cliniko"))
    assert breaker.state() == CircuitState.OPEN  # every process using this key sees it
    assert held(world.org_a, Patient).count() == 60
    breaker.record_success()


def test_each_tenant_sees_only_its_own_sync_rows(world, sim, run_sync, cliniko_simulator_factory, app_role):
    sim.store.edit("patients", sim.store.ids("patients")[0], first_name="y" * 200)  # a quarantined row
    run_sync("full")
    other = cliniko_simulator_factory(api_key="otherclinickey0123456789-au1", rate_limit=0)
    with tenant_scope(world.org_b):
        connection_b = pms_connection_set(
            world.org_b, kind="cliniko", api_key=other.api_key, base_url=other.base_url
        )
    run_sync(
        organization=world.org_b,
        connection=connection_b,
        adapter_options=fast_adapter_options(other),
        clock=sim_clock(other),
    )
    with tenant_scope(world.org_a):
        patients_a = set(Patient.objects.for_org(world.org_a).values_list("pk", flat=True))
    for org, other_org in ((world.org_a, world.org_b), (world.org_b, world.org_a)):
        with tenant_scope(org):
            with db_connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL ROLE {APP_ROLE}")
            for model in (*SYNC_TABLES, Patient, Appointment):
                rows = model.objects.all()  # no ORM filter: the database's policy decides
                assert not rows.filter(organization_id=other_org.pk).exists(), model.__name__
            assert SyncRun.objects.count() >= 1 and SyncCursor.objects.count() == 6
            mine = set(Patient.objects.values_list("pk", flat=True))
            assert (mine == patients_a) == (org == world.org_a)
            with db_connection.cursor() as cursor:
                cursor.execute("RESET ROLE")
    with tenant_scope(world.org_a):
        assert QuarantinedRecord.objects.for_org(world.org_a).count() == 1
    with tenant_scope(world.org_b):
        assert QuarantinedRecord.objects.for_org(world.org_b).count() == 0


def test_each_connection_gets_an_hourly_schedule(world, sim, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), tenant_scope(world.org_a):
        connection = pms_connection_set(
            world.org_a, kind="cliniko", api_key=sim.api_key, base_url=sim.base_url
        )
    schedule = Schedule.objects.get(name=f"sync:connection:{connection.pk}")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "sync.tasks.sync_scheduled_task",
        "I",
        60,
    )
    assert schedule.args == f"({connection.pk},)" and schedule.repeats == -1
    with django_capture_on_commit_callbacks(execute=True), tenant_scope(world.org_a):
        pms_connection_set(world.org_a, kind="cliniko", sync_interval_minutes=15)
    assert Schedule.objects.get(name=schedule.name).minutes == 15
    with django_capture_on_commit_callbacks(execute=True), tenant_scope(world.org_a):
        pms_connection_set(world.org_a, kind="cliniko", sync_interval_minutes=0)
    assert not Schedule.objects.filter(name=schedule.name).exists()
    with django_capture_on_commit_callbacks(execute=True), tenant_scope(world.org_a):
        pms_connection_set(world.org_a, kind="cliniko", sync_interval_minutes=60)
        connection.delete()
    assert not Schedule.objects.filter(name=schedule.name).exists()


def test_the_scheduled_task_syncs_fully_at_first_then_incrementally(
    world, sim, connection, settings, monkeypatch
):
    options = {"options": FAST_OPTIONS, "adapter_options": fast_adapter_options(sim), "clock": sim_clock(sim)}
    real_execute = services.sync_run_execute
    monkeypatch.setattr(services, "sync_run_execute", lambda *a, **kw: real_execute(*a, **{**kw, **options}))
    first = services.sync_scheduled_run(connection.pk)
    assert first.mode == "full" and first.trigger == "schedule" and first.status == "completed"
    sim.clock.advance(120)
    second = services.sync_scheduled_run(connection.pk)
    assert second.mode == "incremental" and second.status == "completed"
    with tenant_scope(world.org_a):
        SyncCursor.objects.filter(resource="patient").update(
            last_full_at=timezone.now() - timedelta(hours=25)
        )
    sim.clock.advance(120)
    assert services.sync_scheduled_run(connection.pk).mode == "full"
    assert services.sync_scheduled_run(999_999) is None


def test_a_redelivered_task_takes_over_its_own_run_once_the_worker_is_silent(
    world, sim, connection, monkeypatch
):
    """The job queue hands a dead worker's task to another worker: it claims the same run
    (only once the heartbeat is stale) and finishes it, counting on from what was committed."""
    real_write = store.PageWriter.write
    calls = {"n": 0}

    def write_then_die(self, resource, items):
        result = real_write(self, resource, items)
        calls["n"] += resource == "patient"
        if calls["n"] == 1 and resource == "patient":
            raise Killed
        return result

    options = {"options": FAST_OPTIONS, "adapter_options": fast_adapter_options(sim), "clock": sim_clock(sim)}
    run, _ = services.sync_run_request(world.org_a, connection=connection)
    monkeypatch.setattr(store.PageWriter, "write", write_then_die)
    with pytest.raises(Killed):
        services.sync_run_execute(run.pk, world.org_a.pk, **options)
    monkeypatch.setattr(store.PageWriter, "write", real_write)
    assert services.sync_run_execute(run.pk, world.org_a.pk, **options) is None  # still "alive"
    with tenant_scope(world.org_a):
        before = SyncRun.objects.get(pk=run.pk)
        SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    finished = services.sync_run_execute(run.pk, world.org_a.pk, **options)
    assert finished.pk == run.pk and finished.status == "completed"
    assert finished.requests > before.requests > 0
    # Counted on: what was committed before the crash is neither read nor counted again.
    assert finished.stats["location"] == before.stats["location"]
    assert held(world.org_a, Patient).count() == 60 and finished.stats["patient"]["created"] == 60


def test_a_queued_run_no_worker_took_is_replaced(world, connection, settings):
    first, _ = services.sync_run_request(world.org_a, connection=connection)
    assert services.sync_run_request(world.org_a, connection=connection)[0].pk == first.pk
    with tenant_scope(world.org_a):
        SyncRun.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=2))
    replacement, created = services.sync_run_request(world.org_a, connection=connection)
    assert created and replacement.pk != first.pk
    first.refresh_from_db()
    assert (first.status, first.error_code) == ("failed", "QUEUE_LOST")


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_lost_its_run_stops_and_commits_nothing_more(world, sim, connection, monkeypatch):
    """Thought dead (heartbeat stale) and taken over, a worker that was only slow must not go
    on writing: its next page's transaction finds the claim changed and rolls back."""
    from django.db import DEFAULT_DB_ALIAS, connections

    real_write = store.PageWriter.write
    pages = {"n": 0}

    def write_then_be_taken_over(self, resource, items):
        result = real_write(self, resource, items)
        pages["n"] += 1
        if pages["n"] == 3:  # another worker claims the run, in its own committed transaction
            other = connections.create_connection(DEFAULT_DB_ALIAS)
            try:
                with other.cursor() as cursor:
                    cursor.execute("UPDATE sync_syncrun SET claim = 'someone-else'")
            finally:
                other.close()
        return result

    monkeypatch.setattr(store.PageWriter, "write", write_then_be_taken_over)
    run, _ = services.sync_run_request(world.org_a, connection=connection)
    result = services.sync_run_execute(
        run.pk,
        world.org_a.pk,
        options=FAST_OPTIONS,
        adapter_options=fast_adapter_options(sim),
        clock=sim_clock(sim),
    )
    assert result is None and pages["n"] == 3
    with tenant_scope(world.org_a):
        run.refresh_from_db()
        assert run.status == "running" and run.claim == "someone-else"  # the new owner's
        assert run.pages == 2  # the third page rolled back with the failed check
        practitioners = SyncCursor.objects.for_org(world.org_a).get(resource="practitioner")
    # Pages: location, active practitioners, inactive practitioners. The third did not land.
    assert practitioners.in_flight["resume"]["listing"] == 0


def test_quarantine_is_released_under_the_application_role(world, sim, connection, app_role):
    """Row-level security hides tenant rows outside a tenant transaction; the writer must
    look for quarantine entries inside one (the superuser running the suite sees everything)."""
    from django.db import connection as db

    with db.cursor() as cursor:
        cursor.execute(f"SET ROLE {APP_ROLE}")  # session-wide; undone with the test's transaction
    try:
        payload = sim.store.record("patients", sim.store.ids("patients")[0])
        with tenant_scope(world.org_a):
            adapter = services.base.adapter_for(connection)
        writer = store.PageWriter(
            organization=world.org_a, connection=connection, adapter=adapter, run_id=None, now=timezone.now()
        )
        with tenant_scope(world.org_a):
            writer.write("patient", [{**payload, "first_name": "x" * 200}])
            assert QuarantinedRecord.objects.for_org(world.org_a).count() == 1
        later = store.PageWriter(
            organization=world.org_a, connection=connection, adapter=adapter, run_id=None, now=timezone.now()
        )
        with tenant_scope(world.org_a):
            later.write("patient", [payload])
            assert QuarantinedRecord.objects.for_org(world.org_a).count() == 0
    finally:
        with db.cursor() as cursor:
            cursor.execute("RESET ROLE")
