"""The ASGI entry point: HTTP through Django's WSGI handler on a thread pool, the event stream
through Django's ASGI handler, WebSockets through Channels."""

import asyncio
import json
import threading

import pytest
from channels.testing import HttpCommunicator
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_started

from routiq.asgi import ASYNC_PATHS, HttpRouter, application


@pytest.fixture
def handlers():
    """The handler class and thread each request started in."""
    seen = []

    def started(sender, **kwargs):
        seen.append((sender, threading.current_thread().name))

    request_started.connect(started)
    yield seen
    request_started.disconnect(started)


def request(method, path, *, body=b"", headers=()):
    async def go():
        communicator = HttpCommunicator(
            application, method, path, body=body, headers=[(b"host", b"localhost"), *headers]
        )
        return await communicator.get_response(timeout=10)

    return asyncio.run(go())


def test_a_request_runs_in_the_wsgi_handler_on_a_pool_thread(handlers):
    response = request("GET", "/health/live")
    assert response["status"] == 200 and json.loads(response["body"])["status"] == "ok"
    ((sender, thread),) = handlers
    assert sender is WSGIHandler and thread.startswith("WSGI")


@pytest.mark.django_db(transaction=True)  # the pool thread has its own connection: committed rows only
def test_a_request_body_and_its_answer_pass_through_whole(world, token_for, handlers):
    from clinics.rls import tenant_scope
    from patients.models import Patient
    from patients.profiles import profiles_refresh_all

    with tenant_scope(world.org_a):
        patient = Patient.objects.create(
            organization=world.org_a, pms="cliniko", external_id="p-1", first_name="Ada", last_name="Lovelace"
        )
    profiles_refresh_all(world.org_a)
    token = token_for(world.org_a)
    body = json.dumps({"patient_ids": [patient.pk, 999_999]}).encode()
    response = request(
        "POST",
        f"/api/v1/reengagement/{world.org_a.pk}/patient-profiles/batch",
        body=body,
        headers=[
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    )
    answer = json.loads(response["body"])
    assert response["status"] == 200, answer
    assert [p["patient_id"] for p in answer["patient_profiles"]] == [patient.pk]
    assert answer["not_found"] == [999_999]
    assert {sender for sender, _ in handlers} == {WSGIHandler}


def test_only_the_event_stream_goes_to_the_asgi_handler():
    calls = []

    def app(name):
        async def call(scope, receive, send):
            calls.append((name, scope["path"]))

        return call

    router = HttpRouter(wsgi=app("wsgi"), asgi=app("asgi"), async_paths=ASYNC_PATHS)
    for path in (
        "/api/v1/events/org_1/stream",
        "/api/v1/events/org_1/stream/",
        "/api/v1/events/org_1",
        "/api/v1/events/org_1/stream/extra",
        "/health",
    ):
        asyncio.run(router({"type": "http", "path": path}, None, None))
    assert calls == [
        ("asgi", "/api/v1/events/org_1/stream"),
        ("asgi", "/api/v1/events/org_1/stream/"),
        ("wsgi", "/api/v1/events/org_1"),
        ("wsgi", "/api/v1/events/org_1/stream/extra"),
        ("wsgi", "/health"),
    ]
