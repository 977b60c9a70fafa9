"""The sync endpoints: triggers, runs, status and patient stats, with roles, tenants,
refusals when the PMS is out of reach, and no secret in any answer."""

from __future__ import annotations

import json

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django_q.models import OrmQ
from model_bakery import baker

from clinics.models import ConnectionStatus, PmsConnection
from clinics.rls import tenant_scope
from clinics.services import pms_connection_set
from conftest import data_queries
from routiq.api.throttling import SyncTriggerThrottle
from sync import tasks
from sync.models import SyncRun
from sync.pms.pacing import CircuitBreaker, credential_key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_sync_settings(settings, monkeypatch):
    settings.CLINIKO_RATE_PER_MINUTE = 600_000
    settings.SYNC_BACKOFF_BASE = 0.001
    settings.SYNC_BACKOFF_CAP = 0.01
    settings.SYNC_WINDOW_MARGIN_SECONDS = 0
    # The trigger throttle (6 an hour, shared across processes) has its own test; here it would
    # also carry counts from test to test through a shared Redis.
    monkeypatch.setattr(SyncTriggerThrottle, "allow_request", lambda self, request, view: True)


def body(response):
    return json.loads(response.content)


def trigger(api, token, org, path="cliniko/sync", **data):
    return api("post", f"/api/v1/{path}/{org.pk}", token, data=json.dumps(data))


def test_staff_trigger_queues_a_run_and_a_second_gets_it_back(
    world, connection, api, token_for, django_capture_on_commit_callbacks
):
    token = token_for(world.org_a, role="org:member")
    with django_capture_on_commit_callbacks(execute=True):
        first = trigger(api, token, world.org_a)
    assert first.status_code == 202, first.content
    data = body(first)
    run = data["run"]
    assert data["created"] is True and run["status"] == "queued" and run["mode"] == "incremental"
    assert data["status_url"] == f"/api/v1/sync/{world.org_a.pk}/runs/{run['id']}" == run["status_url"]
    assert OrmQ.objects.count() == 1  # handed to the job queue once the request committed
    again = trigger(api, token, world.org_a, mode="full")
    assert (
        again.status_code == 200 and body(again)["created"] is False and body(again)["run"]["id"] == run["id"]
    )
    assert OrmQ.objects.count() == 1


def test_a_queued_run_is_carried_out_by_the_task_and_followed_by_its_url(
    world, sim, connection, api, token_for
):
    token = token_for(world.org_a)
    run = body(trigger(api, token, world.org_a, mode="comprehensive"))["run"]
    assert run["mode"] == "full"
    assert tasks.sync_run_task(run["id"], world.org_a.pk) == "completed"
    assert tasks.sync_run_task(run["id"], world.org_a.pk) == "not claimed"  # a second delivery is harmless
    followed = api("get", f"{run['status_url']}?include_logs=true", token)
    assert followed.status_code == 200
    done = body(followed)["run"]
    assert done["status"] == "completed" and done["stats"]["patient"]["created"] == 60
    assert done["requests"] > 0 and done["duration_seconds"] > 0
    assert [e["event"] for e in done["log"]][0] == "run_started" and done["log"][-1][
        "event"
    ] == "run_finished"
    assert "log" not in body(api("get", run["status_url"], token))["run"]


@pytest.mark.parametrize(
    ("sent", "mode", "resources"),
    [
        ({"mode": "incremental"}, "incremental", []),
        ({"mode": "basic"}, "incremental", []),
        ({"mode": "full"}, "full", []),
        ({"force_full": True}, "full", []),
        ({"mode": "patients-only"}, "incremental", ["patient"]),
    ],
)
def test_modes_the_frontend_sends(world, connection, api, token_for, sent, mode, resources):
    response = trigger(api, token_for(world.org_a), world.org_a, **sent)
    assert response.status_code == 202
    assert (body(response)["run"]["mode"], body(response)["run"]["resources"]) == (mode, resources)


@pytest.mark.parametrize("sent", [{"mode": "everything"}, {"force_full": "maybe"}, {"mode": 3}])
def test_a_bad_mode_is_a_validation_error(world, connection, api, token_for, sent):
    response = trigger(api, token_for(world.org_a), world.org_a, **sent)
    assert response.status_code == 400 and body(response)["error"]["code"] == "VALIDATION_ERROR"
    assert not SyncRun.objects.exists()


def test_read_only_members_cannot_trigger_but_can_read(world, connection, api, token_for):
    token = token_for(world.org_a, role="org:viewer")
    response = trigger(api, token, world.org_a)
    assert response.status_code == 403 and body(response)["error"]["code"] == "PERMISSION_DENIED"
    assert api("get", f"/api/v1/cliniko/status/{world.org_a.pk}", token).status_code == 200


def test_another_tenant_can_neither_trigger_nor_see_runs(world, connection, api, token_for):
    mine = body(trigger(api, token_for(world.org_a), world.org_a))["run"]
    intruder = token_for(world.org_b, user="user_bob")
    response = trigger(api, intruder, world.org_a)
    assert response.status_code == 403 and body(response)["error"]["code"] == "ORG_ACCESS_DENIED"
    for path in (
        f"sync/{world.org_a.pk}/runs/{mine['id']}",
        f"cliniko/status/{world.org_a.pk}",
        f"cliniko/patients/{world.org_a.pk}/stats",
        f"sync/{world.org_a.pk}/runs",
    ):
        assert api("get", f"/api/v1/{path}", intruder).status_code == 403, path
    # Through its own organization's path, the other tenant's run simply does not exist.
    own_path = api("get", f"/api/v1/sync/{world.org_b.pk}/runs/{mine['id']}", intruder)
    assert own_path.status_code == 404 and body(own_path)["error"]["code"] == "NOT_FOUND"
    assert body(api("get", f"/api/v1/sync/{world.org_b.pk}/runs", intruder))["total"] == 0
    assert trigger(api, intruder, world.org_b).status_code == 404  # org B has no connection


def test_unknown_and_malformed_run_ids_are_not_found(world, connection, api, token_for):
    token = token_for(world.org_a)
    for run_id in ("999999", "99999999999999999999999", "abc", "-1"):
        response = api("get", f"/api/v1/sync/{world.org_a.pk}/runs/{run_id}", token)
        assert response.status_code == 404 and body(response)["error"]["code"] == "NOT_FOUND", run_id


def test_refused_credentials_answer_503_with_fallback_data(world, sim, connection, api, token_for):
    with tenant_scope(world.org_a):
        PmsConnection.objects.filter(pk=connection.pk).update(
            status=ConnectionStatus.NEEDS_ATTENTION, last_successful_sync_at="2026-11-28T08:00:00Z"
        )
    response = trigger(api, token_for(world.org_a), world.org_a)
    assert response.status_code == 503
    error = body(response)["error"]
    assert error["code"] == "PMS_AUTH_FAILED"
    assert error["fallback_data"]["last_updated"].startswith("2026-11-28T08:00:00")
    assert error["fallback_data"]["data_age_minutes"] > 0
    # Everything else keeps serving what is held.
    assert (
        api("get", f"/api/v1/cliniko/patients/{world.org_a.pk}/stats", token_for(world.org_a)).status_code
        == 200
    )


def test_an_open_circuit_answers_503_pms_unavailable(world, sim, connection, api, token_for):
    breaker = CircuitBreaker(credential_key(sim.api_key, namespace="cliniko"), failure_threshold=1)
    breaker.record_failure()
    try:
        response = trigger(api, token_for(world.org_a), world.org_a)
        assert response.status_code == 503
        error = body(response)["error"]
        assert error["code"] == "PMS_UNAVAILABLE" and error["fallback_data"] == {
            "last_updated": None,
            "data_age_minutes": None,
        }
        assert error["details"]["retry_at"]
        status = body(api("get", f"/api/v1/cliniko/status/{world.org_a.pk}", token_for(world.org_a)))
        assert status["sync_status"]["circuit"]["state"] == "open"
    finally:
        breaker.record_success()


def test_a_disabled_connection_is_a_conflict(world, connection, api, token_for):
    with tenant_scope(world.org_a):
        PmsConnection.objects.filter(pk=connection.pk).update(status=ConnectionStatus.DISABLED)
    response = trigger(api, token_for(world.org_a), world.org_a)
    assert response.status_code == 409 and body(response)["error"]["code"] == "CONFLICT"


def test_the_pms_agnostic_trigger(world, sim, connection, api, token_for):
    token = token_for(world.org_a)
    assert trigger(api, token, world.org_a, path="sync").status_code == 202
    with tenant_scope(world.org_a):
        pms_connection_set(world.org_a, kind="nookal", api_key="nookal-key-0123456789")
    two = trigger(api, token, world.org_a, path="sync")
    assert two.status_code == 400 and "pms" in body(two)["error"]["details"]
    named = trigger(api, token, world.org_a, path="sync", pms="nookal")
    assert named.status_code == 202 and body(named)["run"]["pms"] == "nookal"
    assert trigger(api, token, world.org_a, path="sync", pms="other").status_code == 400


def test_status_shows_the_connection_runs_and_data_age(world, sim, connection, api, token_for, run_sync):
    run_sync()
    run_sync()
    token = token_for(world.org_a)
    response = api("get", f"/api/v1/cliniko/status/{world.org_a.pk}?include_logs=true&logs_limit=1", token)
    assert response.status_code == 200
    status = body(response)["sync_status"]
    assert status["pms"] == "cliniko" and status["connected"] is True
    assert (
        status["connection"]["status"] == "active" and status["connection"]["credentials_hint"] == "shard au1"
    )
    assert status["circuit"] == {"state": "closed", "consecutive_failures": 0, "retry_at": None}
    assert status["data_age_minutes"] == 0 and status["last_successful_sync_at"]
    assert (
        status["active_run"] is None and len(status["recent_runs"]) == 1 and status["recent_runs"][0]["log"]
    )
    assert "health_check" not in status
    checked = body(api("get", f"/api/v1/cliniko/status/{world.org_a.pk}?include_health_check=true", token))
    assert checked["sync_status"]["health_check"]["ok"] is True
    staff = token_for(world.org_a, role="org:member")
    refused = api("get", f"/api/v1/cliniko/status/{world.org_a.pk}?include_health_check=true", staff)
    assert refused.status_code == 400
    for bad in ("logs_limit=0", "logs_limit=51", "include_logs=perhaps"):
        assert api("get", f"/api/v1/cliniko/status/{world.org_a.pk}?{bad}", token).status_code == 400, bad


def test_no_answer_ever_carries_the_api_key(world, sim, connection, api, token_for, run_sync):
    run_sync()
    token = token_for(world.org_a)
    texts = [
        trigger(api, token, world.org_a).content,
        api(
            "get",
            f"/api/v1/cliniko/status/{world.org_a.pk}?include_logs=true&include_health_check=true",
            token,
        ).content,
        api("get", f"/api/v1/sync/{world.org_a.pk}/runs?include_logs=true", token).content,
    ]
    secret = sim.api_key.rsplit("-", 1)[0]
    assert all(secret.encode() not in text for text in texts)


def test_run_list_queries_do_not_grow_with_the_page(world, connection, api, token_for):
    token = token_for(world.org_a)
    with tenant_scope(world.org_a):
        baker.make(SyncRun, organization=world.org_a, connection=connection, status="completed", _quantity=3)

    def queries(limit):
        with CaptureQueriesContext(db_connection) as captured:
            response = api("get", f"/api/v1/sync/{world.org_a.pk}/runs?limit={limit}", token)
        assert response.status_code == 200
        return len(data_queries(captured)), body(response)

    queries(1)  # the token's first use mirrors its user and membership
    few, page = queries(1)
    with tenant_scope(world.org_a):
        baker.make(SyncRun, organization=world.org_a, connection=connection, status="completed", _quantity=20)
    many, full = queries(20)
    assert few == many and page["count"] == 1 and full["count"] == 20 and full["total"] == 23


def test_patient_stats_count_what_is_held(world, sim, connection, api, token_for, run_sync):
    run_sync()
    sim.store.archive("patients", sim.store.ids("patients")[0])
    run_sync()
    token = token_for(world.org_a)
    response = api("get", f"/api/v1/cliniko/patients/{world.org_a.pk}/stats", token)
    assert response.status_code == 200
    stats = body(response)["patient_stats"]["stats"]
    assert stats["total"] == 60 and stats["active"] + stats["archived"] + stats["merged"] == 60
    assert stats["archived"] >= 1 and stats["with_appointments"] > 0
    assert stats["with_upcoming_appointments"] <= stats["with_appointments"]
    assert stats["data_age_minutes"] == 0 and "patients" not in body(response)["patient_stats"]
    detailed = body(
        api(
            "get",
            f"/api/v1/cliniko/patients/{world.org_a.pk}/stats"
            "?include_details=true&with_appointments_only=true&limit=5",
            token,
        )
    )
    patients = detailed["patient_stats"]["patients"]
    assert len(patients) == 5 and all(p["appointment_count"] > 0 for p in patients)
    assert {"patient_id", "cliniko_patient_id", "patient_name", "is_active"} <= set(patients[0])
    from clinics.models import AuditEvent

    with tenant_scope(world.org_a):
        assert AuditEvent.objects.for_org(world.org_a).filter(action="patient.list").count() == 1
    assert api("get", f"/api/v1/cliniko/patients/{world.org_a.pk}/stats?limit=201", token).status_code == 400


def test_triggers_spend_the_organizations_sync_budget(world, connection, api, token_for, monkeypatch):
    from django.core.cache import cache

    monkeypatch.undo()  # the real throttle, 6 an hour per organization
    from routiq.api.throttling import WindowRateThrottle

    monkeypatch.setattr(WindowRateThrottle, "timer", lambda self: 1_800_000_000.0 + 600)  # mid-hour
    key = SyncTriggerThrottle.cache_format % {"scope": "sync_trigger", "ident": world.org_a.pk}
    key = f"{key}:{int((1_800_000_000 + 600) // 3600)}"  # the window's counter
    cache.delete(key)
    try:
        token = token_for(world.org_a)
        statuses = [trigger(api, token, world.org_a).status_code for _ in range(7)]
        assert statuses == [202, 200, 200, 200, 200, 200, 429]
        limited = trigger(api, token, world.org_a)
        assert body(limited)["error"]["code"] == "RATE_LIMITED" and int(limited["Retry-After"]) > 0
    finally:
        cache.delete(key)
