"""The fallbacks: polling and Server-Sent Events, with the API's authentication and tenancy."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connection, connections
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext

from conftest import ORG_B_ID, data_queries
from realtime.events import EventType, events_prune, publish

EVENTS = "/api/v1/events/{org}"
STREAM = "/api/v1/events/{org}/stream"


# --- polling ------------------------------------------------------------------------------------
def test_polling_answers_the_events_after_since_in_the_envelope(world, api, token_for, sent):
    for n in range(4):
        publish(world.org_a, EventType.SYNC_PROGRESS, {"n": n})
    token = token_for(world.org_a)
    api("get", EVENTS.format(org=world.org_a.pk), token=token)  # the token's user is mirrored once
    with CaptureQueriesContext(connection) as one:
        api("get", EVENTS.format(org=world.org_a.pk) + "?since=3&limit=1", token=token)
    # The same number of queries however many events a page holds.
    with CaptureQueriesContext(connection) as two:
        response = api("get", EVENTS.format(org=world.org_a.pk) + "?since=1&limit=2", token=token)
    assert len(data_queries(two)) == len(data_queries(one))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is True and body["organization_id"] == world.org_a.pk
    assert [(e["seq"], e["type"], e["data"]) for e in body["events"]] == [
        (2, "sync_progress", {"n": 1}),
        (3, "sync_progress", {"n": 2}),
    ]
    assert (
        body["count"],
        body["since"],
        body["latest_seq"],
        body["has_more"],
        body["snapshot_required"],
    ) == (2, 1, 4, True, False)
    rest = api("get", EVENTS.format(org=world.org_a.pk) + "?since=3", token=token_for(world.org_a)).json()
    assert [e["seq"] for e in rest["events"]] == [4] and rest["has_more"] is False


def test_polling_without_since_answers_where_to_start(world, api, token_for, sent):
    publish(world.org_a, EventType.SYNC_STARTED, {})
    body = api("get", EVENTS.format(org=world.org_a.pk), token=token_for(world.org_a)).json()
    assert (body["events"], body["since"], body["latest_seq"], body["snapshot_required"]) == ([], 1, 1, False)


def test_polling_from_before_the_log_asks_for_a_snapshot(world, api, token_for, sent, settings):
    settings.REALTIME_EVENT_KEEP_PER_ORGANIZATION = 2
    for _ in range(5):
        publish(world.org_a, EventType.SYNC_PROGRESS, {})
    events_prune()
    body = api("get", EVENTS.format(org=world.org_a.pk) + "?since=1", token=token_for(world.org_a)).json()
    assert (body["events"], body["latest_seq"], body["snapshot_required"]) == ([], 5, True)
    assert (
        api("get", EVENTS.format(org=world.org_a.pk) + "?since=3", token=token_for(world.org_a)).json()[
            "snapshot_required"
        ]
        is False
    )


@pytest.mark.parametrize(
    "query", ["since=-1", "since=abc", "since=99999999999999999999", "limit=0", "limit=1001"]
)
def test_bad_polling_parameters_are_a_400(world, api, token_for, query):
    response = api("get", EVENTS.format(org=world.org_a.pk) + f"?{query}", token=token_for(world.org_a))
    assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("path", [EVENTS, STREAM])
def test_no_credentials_no_events(world, api, path):
    response = api("get", path.format(org=world.org_a.pk))
    assert response.status_code == 401 and response.json()["success"] is False


@pytest.mark.parametrize("path", [EVENTS, STREAM])
def test_another_tenants_events_are_refused(world, api, token_for, sent, path):
    publish(world.org_b, EventType.SYNC_STARTED, {"secret": "b"})
    # Org A's caller asking for org B, and org A's token with org B in the header.
    response = api("get", path.format(org=ORG_B_ID) + "?since=0", token=token_for(world.org_a))
    assert response.status_code == 403 and response.json()["error"]["code"] == "ORG_ACCESS_DENIED"
    assert "secret" not in response.content.decode()
    mismatched = api(
        "get",
        path.format(org=world.org_a.pk),
        token=token_for(world.org_a),
        headers={"HTTP_X_ORGANIZATION_ID": ORG_B_ID},
    )
    assert mismatched.status_code == 403
    # A session member of org B only, asking for org A.
    from django.test import Client

    client = Client()
    client.force_login(world.admin_b)
    assert client.get(path.format(org=world.org_a.pk)).status_code == 403
    # Org A's own poll never shows org B's event.
    own = api("get", EVENTS.format(org=world.org_a.pk) + "?since=0", token=token_for(world.org_a)).json()
    assert own["events"] == [] and own["latest_seq"] == 0


def test_an_unknown_organization_is_not_found(world, api, token_for):
    assert (
        api(
            "get",
            EVENTS.format(org="org_3aBcDeFgHiJkLmNoPqRsTuVwXyZ"),
            token=token_for("org_3aBcDeFgHiJkLmNoPqRsTuVwXyZ"),
        ).status_code
        == 404
    )
    assert api("get", EVENTS.format(org="nonsense"), token=token_for(world.org_a)).status_code == 404


# --- Server-Sent Events ---------------------------------------------------------------------------
def parse(chunks):
    """SSE frames as (id, event, data) tuples; comments as ("comment", text)."""
    frames = []
    for block in "".join(chunks).split("\n\n"):
        if not block:
            continue
        if block.startswith(":"):
            frames.append(("comment", block[1:].strip()))
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        if "retry" in fields:
            frames.append(("retry", fields["retry"]))
        else:
            frames.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return frames


async def read_stream(response, *, until, timeout=10):
    """Chunks of a streaming response until `until(frames)` holds (or the stream ends)."""
    chunks = []
    iterator = response.streaming_content.__aiter__()

    async def pump():
        async for chunk in iterator:
            chunks.append(chunk.decode() if isinstance(chunk, bytes) else chunk)
            if until(parse(chunks)):
                return

    await asyncio.wait_for(pump(), timeout)
    return parse(chunks)


async def open_stream(path, token, **headers):
    # Headers per request: AsyncClient(headers=...) turns them into `http-...` names.
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream", **headers}
    return await AsyncClient().get(path, headers=headers)


@pytest.mark.django_db(transaction=True)
def test_the_stream_opens_with_a_snapshot_then_delivers_events_and_heartbeats(world, token_for, live):
    live.REALTIME_HEARTBEAT_SECONDS = 0.3
    publish(world.org_a, EventType.SYNC_STARTED, {})

    async def scenario():
        response = await open_stream(STREAM.format(org=world.org_a.pk), token_for(world.org_a))
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/event-stream")
        assert response["Cache-Control"] == "no-cache"
        opening = await read_stream(response, until=lambda frames: len(frames) >= 1)
        # Once it streams, the request's pooled connection has been given back.
        idle = await sync_to_async(lambda: connections["default"].connection is None)()
        opening += await read_stream(response, until=lambda frames: len(frames) >= 1)
        await database_sync_to_async(publish)(world.org_a, EventType.SYNC_PROGRESS, {"n": 1})
        rest = await read_stream(
            response,
            until=lambda frames: any(f[0] == "comment" for f in frames) and any(f[0] == 2 for f in frames),
        )
        await response.streaming_content.aclose()
        return opening, idle, rest

    opening, idle, rest = asyncio.run(scenario())
    assert opening[0] == ("retry", "2000")
    seq, kind, snapshot = opening[1]
    assert (seq, kind, snapshot["type"], snapshot["seq"]) == (1, "snapshot", "snapshot", 1)
    assert "summary" in snapshot["dashboard"] and "summary" in snapshot["profiles"]
    assert idle
    delta = next(f for f in rest if f[0] == 2)
    assert delta[1] == "sync_progress" and delta[2]["data"] == {"n": 1}
    assert ("comment", "heartbeat") in rest


@pytest.mark.django_db(transaction=True)
def test_the_stream_resumes_after_last_event_id_and_fills_gaps(world, token_for, live, layer_drops):
    for n in range(4):
        publish(world.org_a, EventType.SYNC_PROGRESS, {"n": n})

    async def scenario():
        response = await open_stream(
            STREAM.format(org=world.org_a.pk), token_for(world.org_a), **{"Last-Event-ID": "2"}
        )
        opening = await read_stream(response, until=lambda frames: any(f[0] == 4 for f in frames))
        layer_drops.on = True
        await database_sync_to_async(publish)(world.org_a, EventType.SYNC_PROGRESS, {"n": 4})
        layer_drops.on = False
        await database_sync_to_async(publish)(world.org_a, EventType.SYNC_PROGRESS, {"n": 5})
        later = await read_stream(response, until=lambda frames: any(f[0] == 6 for f in frames))
        await response.streaming_content.aclose()
        return opening, later

    opening, later = asyncio.run(scenario())
    assert [f[0] for f in opening if isinstance(f[0], int)] == [3, 4]
    assert [f[0] for f in later if isinstance(f[0], int)] == [5, 6]  # the lost 5 came from the log


@pytest.mark.django_db(transaction=True)
def test_a_stream_from_before_the_log_opens_with_a_snapshot_and_ends_at_its_age(world, token_for, live):
    live.REALTIME_EVENT_KEEP_PER_ORGANIZATION = 1
    live.REALTIME_SSE_MAX_AGE_SECONDS = 0.5
    for _ in range(3):
        publish(world.org_a, EventType.SYNC_PROGRESS, {})
    events_prune()

    async def scenario():
        response = await open_stream(STREAM.format(org=world.org_a.pk) + "?since=1", token_for(world.org_a))
        return await read_stream(response, until=lambda frames: False)  # to the end

    frames = asyncio.run(scenario())
    assert frames[0][0] == "retry"
    assert frames[1][:2] == (3, "snapshot") and len(frames) == 2


def test_a_bad_last_event_id_is_a_400(world, api, token_for):
    response = api(
        "get",
        STREAM.format(org=world.org_a.pk),
        token=token_for(world.org_a),
        headers={"HTTP_LAST_EVENT_ID": "x1"},
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_refusals_are_json_even_to_an_event_source(world, client, token_for):
    response = client.get(
        STREAM.format(org=ORG_B_ID),
        HTTP_ACCEPT="text/event-stream",
        HTTP_AUTHORIZATION=f"Bearer {token_for(world.org_a)}",
    )
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"


def test_under_wsgi_the_stream_sends_what_is_missing_and_ends(world, api, token_for, sent):
    for n in range(3):
        publish(world.org_a, EventType.SYNC_PROGRESS, {"n": n})
    response = api(
        "get",
        STREAM.format(org=world.org_a.pk),
        token=token_for(world.org_a),
        headers={"HTTP_LAST_EVENT_ID": "1"},
    )
    assert response.status_code == 200
    frames = parse([chunk.decode() for chunk in response.streaming_content])
    assert frames[0] == ("retry", "2000")
    assert [(f[0], f[1], f[2]["data"]["n"]) for f in frames[1:]] == [
        (2, "sync_progress", 1),
        (3, "sync_progress", 2),
    ]
