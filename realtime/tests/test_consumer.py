"""The metrics stream through Channels' communicator, on the production stack (origin check,
session, routes): every refusal, the snapshot, ordered deltas, gaps, resync, timers, limits."""

import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.test import Client
from model_bakery import baker

from clinics.rls import tenant_scope
from clinics.services import pms_connection_set
from conftest import ORG_B_ID, make_claims, sign
from patients.models import Patient
from realtime import protocol
from realtime.events import EventType, events_prune, group_name, publish
from realtime.protocol import APP_PROTOCOL
from realtime.tests.conftest import close_code, next_message, open_socket
from sync.models import SyncRun

pytestmark = [pytest.mark.usefixtures("live"), pytest.mark.django_db(transaction=True)]

UNPROVISIONED = "org_3aBcDeFgHiJkLmNoPqRsTuVwXyZ"


def token(org_id, **overrides):
    return sign(make_claims(org_id, role="org:member", **overrides))


publish_async = database_sync_to_async(publish)


async def connected_socket(org_id, **kwargs):
    communicator, connected, subprotocol = await open_socket(org_id, **kwargs)
    assert connected and subprotocol == APP_PROTOCOL
    snapshot = await next_message(communicator)
    assert snapshot["type"] == "snapshot", snapshot
    return communicator, snapshot


async def refused(org_id, **kwargs):
    """The close code of a connection that is accepted, then refused."""
    communicator, connected, _ = await open_socket(org_id, **kwargs)
    assert connected
    code = await close_code(communicator)
    await communicator.disconnect()
    return code


# --- refusals ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "code"),
    [
        (lambda org: "not-a-jwt", protocol.CLOSE_UNAUTHENTICATED),
        (lambda org: token(org, iat=1000, nbf=1000, exp=2000), protocol.CLOSE_TOKEN_EXPIRED),
        (lambda org: token(ORG_B_ID), protocol.CLOSE_FORBIDDEN),
        (lambda org: sign(make_claims(org, role="org:intern")), protocol.CLOSE_FORBIDDEN),
        (lambda org: token(org, azp="https://evil.example"), protocol.CLOSE_UNAUTHENTICATED),
    ],
    ids=["garbage", "expired", "other-organization", "unknown-role", "other-authorized-party"],
)
def test_bad_credentials_are_refused_with_their_close_code(world, build, code):
    assert asyncio.run(refused(world.org_a.pk, token=build(world.org_a.pk))) == code


def test_an_organization_not_provisioned_is_not_found(world):
    assert asyncio.run(refused(UNPROVISIONED, token=token(UNPROVISIONED))) == protocol.CLOSE_NOT_FOUND


def test_no_credentials_time_out(world, settings):
    settings.REALTIME_AUTH_TIMEOUT_SECONDS = 0.3
    assert asyncio.run(refused(world.org_a.pk)) == protocol.CLOSE_AUTH_TIMEOUT


def test_a_first_message_that_is_not_auth_is_refused(world):
    async def scenario():
        communicator, connected, _ = await open_socket(world.org_a.pk)
        assert connected
        await communicator.send_json_to({"type": "ping"})
        code = await close_code(communicator)
        await communicator.disconnect()
        return code

    assert asyncio.run(scenario()) == protocol.CLOSE_UNAUTHENTICATED


@pytest.mark.parametrize("origin", ["https://evil.example", None], ids=["foreign", "missing"])
def test_a_foreign_or_missing_origin_is_turned_down_in_the_handshake(world, origin):
    async def scenario():
        _, connected, code = await open_socket(world.org_a.pk, token=token(world.org_a.pk), origin=origin)
        return connected, code

    assert asyncio.run(scenario()) == (False, protocol.CLOSE_FORBIDDEN)


def test_this_sites_own_pages_may_connect(world):
    async def scenario():
        communicator, snapshot = await connected_socket(
            world.org_a.pk, token=token(world.org_a.pk), origin="http://testserver"
        )
        await communicator.disconnect()
        return snapshot

    assert asyncio.run(scenario())["organization_id"] == world.org_a.pk


def session_cookie(user):
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def test_staff_pages_use_the_session_of_a_member(world):
    member, stranger = session_cookie(world.staff_a), session_cookie(world.admin_b)

    async def scenario():
        communicator, snapshot = await connected_socket(world.org_a.pk, cookie=member)
        await communicator.disconnect()
        return snapshot, await refused(world.org_a.pk, cookie=stranger)

    snapshot, code = asyncio.run(scenario())
    assert snapshot["organization_id"] == world.org_a.pk
    assert code == protocol.CLOSE_FORBIDDEN


def test_the_token_may_come_as_the_first_message(world):
    async def scenario():
        communicator, connected, subprotocol = await open_socket(world.org_a.pk)
        assert connected and subprotocol == APP_PROTOCOL
        await communicator.send_json_to({"type": "auth", "token": token(world.org_a.pk)})
        snapshot = await next_message(communicator)
        await communicator.disconnect()
        return snapshot

    assert asyncio.run(scenario())["type"] == "snapshot"


# --- the snapshot, then deltas ----------------------------------------------------------------
def test_the_snapshot_carries_the_summaries_sync_status_and_the_current_number(world, sent):
    for n in range(3):
        baker.make(Patient, organization=world.org_a, pms="cliniko", external_id=f"p{n}")
    with tenant_scope(world.org_a):
        connection = pms_connection_set(
            world.org_a, kind="cliniko", api_key="snapshot0123456789abcdef-au1", base_url="http://127.0.0.1:9"
        )
        baker.make(SyncRun, organization=world.org_a, connection=connection, status="running", pms="cliniko")
    publish(world.org_a, EventType.SYNC_STARTED, {})
    publish(world.org_a, EventType.SYNC_PROGRESS, {})

    async def scenario():
        communicator, snapshot = await connected_socket(world.org_a.pk, token=token(world.org_a.pk))
        await communicator.disconnect()
        return snapshot

    snapshot = asyncio.run(scenario())
    assert snapshot["seq"] == 2 and snapshot["organization_id"] == world.org_a.pk
    assert snapshot["dashboard"]["summary"]["currency"] == "AUD"
    assert "needing_contact" in snapshot["dashboard"]["summary"]
    assert "total_patients" in snapshot["profiles"]["summary"]
    assert "data_as_of" in snapshot and "at" in snapshot
    (status,) = snapshot["sync"]
    assert status["pms"] == "cliniko" and status["active_run"]["status"] == "running"
    assert "token" not in json.dumps(snapshot)


def test_deltas_follow_the_snapshot_in_order_and_only_the_organizations_own(world):
    async def scenario():
        await publish_async(world.org_a, EventType.SYNC_STARTED, {"n": 0})
        communicator, snapshot = await connected_socket(world.org_a.pk, token=token(world.org_a.pk))
        await publish_async(world.org_b, EventType.SYNC_STARTED, {"org": "b"})
        for n in range(1, 4):
            await publish_async(world.org_a, EventType.SYNC_PROGRESS, {"n": n})
        received = [await next_message(communicator) for _ in range(3)]
        assert await communicator.receive_nothing(0.3)
        await communicator.disconnect()
        return snapshot, received

    snapshot, received = asyncio.run(scenario())
    assert snapshot["seq"] == 1
    assert [(m["type"], m["seq"], m["data"]) for m in received] == [
        ("sync_progress", 2, {"n": 1}),
        ("sync_progress", 3, {"n": 2}),
        ("sync_progress", 4, {"n": 3}),
    ]


def test_a_gap_is_filled_from_the_log_and_late_or_repeated_copies_are_dropped(world, layer_drops):
    async def scenario():
        communicator, _ = await connected_socket(world.org_a.pk, token=token(world.org_a.pk))
        layer_drops.on = True
        await publish_async(world.org_a, EventType.SYNC_PROGRESS, {"n": 1})
        await publish_async(world.org_a, EventType.SYNC_PROGRESS, {"n": 2})
        layer_drops.on = False
        await publish_async(world.org_a, EventType.SYNC_PROGRESS, {"n": 3})  # its copy shows the gap
        received = [await next_message(communicator) for _ in range(3)]
        # The dropped copies turn up after all (late), twice: neither is delivered again.
        layer = get_channel_layer()
        for copy in [*layer_drops.dropped, *layer_drops.dropped]:
            await layer.group_send(group_name(world.org_a.pk), {"type": "realtime.event", "event": copy})
        assert await communicator.receive_nothing(0.5)
        await communicator.disconnect()
        return received

    received = asyncio.run(scenario())
    assert [(m["seq"], m["data"]["n"]) for m in received] == [(1, 1), (2, 2), (3, 3)]


def test_a_lost_last_copy_arrives_with_the_next_heartbeat(world, layer_drops, settings):
    settings.REALTIME_HEARTBEAT_SECONDS = 0.5

    async def scenario():
        communicator, _ = await connected_socket(world.org_a.pk, token=token(world.org_a.pk))
        layer_drops.on = True
        await publish_async(world.org_a, EventType.SYNC_COMPLETED, {"run": {"id": 1}})
        first, second = await next_message(communicator), await next_message(communicator)
        await communicator.disconnect()
        return first, second

    first, second = asyncio.run(scenario())
    assert (first["type"], first["seq"]) == ("sync_completed", 1)
    assert (second["type"], second["seq"]) == ("heartbeat", 1)


def test_resync_sends_what_was_missed_or_a_snapshot_when_it_is_gone(world, sent, settings):
    for n in range(5):
        publish(world.org_a, EventType.SYNC_PROGRESS, {"n": n})

    async def scenario():
        communicator, snapshot = await connected_socket(world.org_a.pk, token=token(world.org_a.pk))
        await communicator.send_json_to({"type": "resync", "since": 2})
        replayed = [await next_message(communicator) for _ in range(4)]
        await database_sync_to_async(events_prune)()
        await communicator.send_json_to({"type": "resync", "since": 1})
        too_old = await next_message(communicator)
        await communicator.send_json_to({"type": "resync", "since": 99})
        unknown = await next_message(communicator)
        await communicator.disconnect()
        return snapshot, replayed, too_old, unknown

    settings.REALTIME_EVENT_KEEP_PER_ORGANIZATION = 2
    snapshot, replayed, too_old, unknown = asyncio.run(scenario())
    assert snapshot["seq"] == 5
    assert [m["seq"] for m in replayed[:3]] == [3, 4, 5]
    assert replayed[3] == {"type": "resynced", "since": 2, "seq": 5}
    assert (too_old["type"], too_old["seq"]) == ("snapshot", 5)
    assert (unknown["type"], unknown["seq"]) == ("snapshot", 5)


def test_a_gap_too_long_to_replay_becomes_a_snapshot(world, layer_drops, settings):
    settings.REALTIME_RESYNC_MAX_EVENTS = 2

    async def scenario():
        communicator, _ = await connected_socket(world.org_a.pk, token=token(world.org_a.pk))
        layer_drops.on = True
        for n in range(3):
            await publish_async(world.org_a, EventType.SYNC_PROGRESS, {"n": n})
        layer_drops.on = False
        await publish_async(world.org_a, EventType.SYNC_PROGRESS, {"n": 3})
        message = await next_message(communicator)
        await publish_async(world.org_a, EventType.SYNC_PROGRESS, {"n": 4})
        after = await next_message(communicator)
        await communicator.disconnect()
        return message, after

    message, after = asyncio.run(scenario())
    assert (message["type"], message["seq"]) == ("snapshot", 4)
    assert (after["type"], after["seq"]) == ("sync_progress", 5)


# --- client messages --------------------------------------------------------------------------
def test_ping_pong_and_bad_messages(world):
    async def scenario():
        communicator, _ = await connected_socket(world.org_a.pk, token=token(world.org_a.pk))
        await communicator.send_json_to({"type": "ping"})
        pong = await next_message(communicator)
        await communicator.send_to(text_data="not json")
        bad = await next_message(communicator)
        await communicator.send_json_to({"type": "subscribe"})
        unknown = await next_message(communicator)
        await communicator.send_json_to({"type": "resync", "since": "yesterday"})
        bad_since = await next_message(communicator)
        await communicator.send_to(bytes_data=b"\x00")
        code = await close_code(communicator)
        await communicator.disconnect()
        return pong, bad, unknown, bad_since, code

    pong, bad, unknown, bad_since, code = asyncio.run(scenario())
    assert pong["type"] == "pong" and pong["seq"] == 0
    assert (bad["type"], bad["code"]) == ("error", "bad_message")
    assert (unknown["type"], unknown["code"]) == ("error", "unknown_type")
    assert bad_since["code"] == "bad_message"
    assert code == protocol.CLOSE_UNSUPPORTED


def test_too_many_client_messages_close_the_socket(world, settings):
    settings.REALTIME_CLIENT_MESSAGE_BURST = 3
    settings.REALTIME_CLIENT_MESSAGES_PER_SECOND = 0.01

    async def scenario():
        communicator, _ = await connected_socket(world.org_a.pk, token=token(world.org_a.pk))
        for _ in range(4):
            await communicator.send_json_to({"type": "ping"})
        answers = []
        while (message := await next_message(communicator))["type"] == "pong":
            answers.append(message)
        await communicator.disconnect()
        return len(answers), message

    pongs, closing = asyncio.run(scenario())
    assert pongs == 3
    assert closing["code"] == protocol.CLOSE_RATE_LIMITED


# --- time -------------------------------------------------------------------------------------
def test_heartbeats_then_the_idle_timeout(world, settings):
    settings.REALTIME_HEARTBEAT_SECONDS = 0.2
    settings.REALTIME_IDLE_TIMEOUT_SECONDS = 1.0

    async def scenario():
        communicator, _ = await connected_socket(world.org_a.pk, token=token(world.org_a.pk))
        started = time.monotonic()
        beats = 0
        while (message := await next_message(communicator))["type"] in ("heartbeat", "pong"):
            beats += message["type"] == "heartbeat"
            if beats == 2 and message["type"] == "heartbeat":
                await communicator.send_json_to({"type": "ping"})  # heard: the idle clock restarts
        await communicator.disconnect()
        return beats, message, time.monotonic() - started

    beats, message, elapsed = asyncio.run(scenario())
    assert message.get("code") == protocol.CLOSE_IDLE, message
    assert beats >= 5 and elapsed >= 1.0  # beyond the first second: the ping counted


def test_the_connection_ends_at_its_maximum_age(world, settings):
    settings.REALTIME_MAX_CONNECTION_AGE_SECONDS = 0.5

    async def scenario():
        communicator, _ = await connected_socket(world.org_a.pk, token=token(world.org_a.pk))
        code = await close_code(communicator)
        await communicator.disconnect()
        return code

    assert asyncio.run(scenario()) == protocol.CLOSE_MAX_AGE


def test_a_token_must_be_refreshed_in_band_before_it_expires(world, settings):
    settings.REALTIME_TOKEN_GRACE_SECONDS = 0.0

    async def scenario(refresh):
        short = token(world.org_a.pk, exp=int(time.time()) + 2)
        communicator, _ = await connected_socket(world.org_a.pk, token=short)
        if refresh:
            await communicator.send_json_to({"type": "auth", "token": token(world.org_a.pk)})
            ok = await next_message(communicator)
            assert ok["type"] == "auth_ok" and ok["expires_at"] > time.time() + 30
            assert await communicator.receive_nothing(3.0)
            outcome = "open"
        else:
            outcome = await close_code(communicator)
        await communicator.disconnect()
        return outcome

    assert asyncio.run(scenario(refresh=False)) == protocol.CLOSE_TOKEN_EXPIRED
    assert asyncio.run(scenario(refresh=True)) == "open"


def test_a_refreshed_token_must_be_the_same_users_and_valid(world):
    async def scenario(new_token):
        communicator, _ = await connected_socket(world.org_a.pk, token=token(world.org_a.pk))
        await communicator.send_json_to({"type": "auth", "token": new_token})
        code = await close_code(communicator)
        await communicator.disconnect()
        return code

    assert asyncio.run(scenario(token(world.org_a.pk, sub="user_mallory"))) == protocol.CLOSE_FORBIDDEN
    assert asyncio.run(scenario(token(ORG_B_ID))) == protocol.CLOSE_FORBIDDEN
    assert (
        asyncio.run(scenario(token(world.org_a.pk, iat=1000, nbf=1000, exp=2000)))
        == protocol.CLOSE_TOKEN_EXPIRED
    )
