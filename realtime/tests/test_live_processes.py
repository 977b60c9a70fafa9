"""The path an event takes in production, across real processes: a worker process publishes in
a committed transaction, the production ASGI server (uvicorn, production settings, as
bench/_server.py starts it) hears it over the channel layer, and a real WebSocket client
(the `websockets` library) gets it after its snapshot, with the next sequence number. Then
scale-out: two server processes on one channel layer each deliver the worker's one event.

The layer is the one this run has: Redis when REDIS_URL is set, else the PostgreSQL layer
(realtime/layers.py, LISTEN/NOTIFY) on the test database; CI runs the suite in both modes.
Heartbeats are set far beyond the test's length, so an event can only arrive over the layer
(a heartbeat would also find it in the log).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.conf import settings
from django.db import connection as db_connection
from websockets.sync.client import ClientConnection, connect

from bench._server import REPO_ROOT, Server, make_keys, make_token, server_env
from conftest import database_url
from realtime.events import EventType, group_name, publish
from realtime.protocol import APP_PROTOCOL

LAYER = "redis" if settings.REDIS_URL else "postgresql"
ORIGIN = "https://app.routiq.live-test"
ISSUER = "https://clerk.live-test.routiq.example"
IDLE_SECONDS = 6.5
TIMING = {
    "REALTIME_HEARTBEAT_SECONDS": "600",
    "REALTIME_IDLE_TIMEOUT_SECONDS": "600",
    "REALTIME_SSE_POLL_SECONDS": "600",
}
# The worker's part: one publish rolled back (it must reach nobody and give its number back),
# then one committed. Prints the committed event's number.
WORKER = """
import os
from django.db import transaction
from realtime.events import EventType, publish

org, marker = os.environ["LIVE_TEST_ORG"], os.environ["LIVE_TEST_MARKER"]
try:
    with transaction.atomic():
        publish(org, EventType.SYNC_PROGRESS, {"run": {"marker": "rolled back"}})
        raise LookupError
except LookupError:
    pass
with transaction.atomic():
    seq = publish(org, EventType.SYNC_PROGRESS, {"run": {"marker": marker, "pages": 3}})
print(seq)
"""


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return make_keys()


@pytest.fixture
def process_env(keys: tuple[str, str], transactional_db: None) -> dict[str, str]:
    """Production settings on the test database (and this run's REDIS_URL, if any)."""
    env = server_env(database_url(), keys[1], workers=1, issuer=ISSUER, origin=ORIGIN, extra=TIMING)
    if LAYER == "postgresql":
        env.pop("REDIS_URL", None)
    return env


@pytest.fixture
def servers(process_env: dict[str, str]) -> Iterator[Callable[[int], list[Server]]]:
    started: list[Server] = []

    def start(count: int) -> list[Server]:
        batch = [Server(process_env) for _ in range(count)]  # started side by side
        started.extend(batch)
        for server in batch:
            server.wait()
        return batch

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def _worker_publishes(env: dict[str, str], org_id: str, marker: str) -> int:
    completed = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", WORKER],
        cwd=REPO_ROOT,
        env={**env, "LIVE_TEST_ORG": org_id, "LIVE_TEST_MARKER": marker},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return int(completed.stdout.strip().splitlines()[-1])


def _open(server: Server, org_id: str, token: str) -> ClientConnection:
    return connect(
        f"{server.ws_base}/ws/clinics/{org_id}/metrics",
        subprotocols=[APP_PROTOCOL, f"bearer.{token}"],
        origin=ORIGIN,
        open_timeout=10,
        proxy=None,  # loopback, whatever the environment says
    )


def _next(socket: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    return json.loads(socket.recv(timeout=timeout))


def _group_members(org_id: str) -> int:
    """How many channels are in the organization's group, in the layer the servers share."""
    if LAYER == "redis":
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        return client.zcard(f"routiq:group:{group_name(org_id)}")
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM realtime_channel_group WHERE group_name = %s AND expires_at > now()",
            [f"routiq:{group_name(org_id)}"],
        )
        return cursor.fetchone()[0]


def _wait_for_members(org_id: str, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _group_members(org_id) != count:
        assert time.monotonic() < deadline, f"the group never had {count} members ({_group_members(org_id)})"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # the processes see only committed rows
@pytest.mark.parametrize("layer", [LAYER])  # the run's mode: CI runs the suite once in each
def test_a_worker_process_publishes_and_the_server_process_delivers_after_the_snapshot(
    layer, world, keys, process_env, servers
):
    org_id = world.org_a.pk
    for number in (1, 2):  # already in the log: the snapshot's number is not zero
        publish(org_id, EventType.SYNC_STARTED, {"run": {"marker": f"before {number}"}})
    (server,) = servers(1)
    token = make_token(
        keys[0], org_id, user="user_live_alice", lifetime_seconds=300, issuer=ISSUER, origin=ORIGIN
    )

    with _open(server, org_id, token) as socket:
        assert socket.subprotocol == APP_PROTOCOL  # the token is never echoed
        snapshot = _next(socket)
        assert snapshot["type"] == "snapshot"
        assert snapshot["organization_id"] == org_id and snapshot["seq"] == 2
        _wait_for_members(org_id, 1)
        # Quiet for longer than the layer's blocking read (channels_redis waits 5 s per BZPOPMIN):
        # a read timeout no longer than that ended the waiting consumer, and its socket.
        time.sleep(IDLE_SECONDS)

        seq = _worker_publishes(process_env, org_id, "committed")

        assert seq == 3  # the rolled-back publish gave its number back
        event = _next(socket)
        assert (event["type"], event["seq"]) == ("sync_progress", 3)
        assert event["data"] == {"run": {"marker": "committed", "pages": 3}}
        with pytest.raises(TimeoutError):
            socket.recv(timeout=0.5)  # nothing else: the rolled-back event reached nobody


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("layer", [LAYER])
def test_two_server_processes_on_one_channel_layer_both_deliver_the_workers_event(
    layer, world, keys, process_env, servers
):
    org_id = world.org_a.pk
    publish(org_id, EventType.SYNC_STARTED, {"run": {"marker": "before"}})
    first, second = servers(2)
    assert first.port != second.port and first.process.pid != second.process.pid
    tokens = [
        make_token(keys[0], org_id, user=user, lifetime_seconds=300, issuer=ISSUER, origin=ORIGIN)
        for user in ("user_live_alice", "user_live_sam")
    ]

    with _open(first, org_id, tokens[0]) as one, _open(second, org_id, tokens[1]) as other:
        assert [_next(one)["seq"], _next(other)["seq"]] == [1, 1]  # both snapshots
        _wait_for_members(org_id, 2)  # one channel from each process, in the shared layer

        seq = _worker_publishes(process_env, org_id, "fan-out")

        with ThreadPoolExecutor(2) as pool:
            received = list(pool.map(_next, (one, other)))
    assert seq == 2
    for event in received:
        assert (event["type"], event["seq"]) == ("sync_progress", 2)
        assert event["data"]["run"]["marker"] == "fan-out"


def _sse_frames(response: Any) -> Iterator[dict[str, str]]:
    """The events of a Server-Sent Events response, as {"id", "event", "data"} (comments and
    the opening `retry` skipped)."""
    frame: dict[str, str] = {}
    for raw in response:
        line = raw.decode().rstrip("\n")
        if not line:
            if "event" in frame:
                yield frame
            frame = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            frame[name] = value


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("layer", [LAYER])
def test_the_event_stream_and_a_socket_of_one_server_share_its_membership_and_get_the_workers_event(
    layer, world, keys, process_env, servers
):
    """The stream waits on the server's event loop (the ASGI path, not the WSGI pool), and the
    process is one member of the group for all its clients (realtime.hub)."""
    import urllib.request

    org_id = world.org_a.pk
    (server,) = servers(1)
    token = make_token(keys[0], org_id, user="user_live_alice", lifetime_seconds=300, issuer=ISSUER, origin=ORIGIN)
    request = urllib.request.Request(
        f"{server.base}/api/v1/events/{org_id}/stream", headers={"Authorization": f"Bearer {token}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response, _open(server, org_id, token) as socket:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        frames = _sse_frames(response)
        assert next(frames)["event"] == "snapshot"
        assert _next(socket)["type"] == "snapshot"
        _wait_for_members(org_id, 1)  # one process, one member: not one per client

        seq = _worker_publishes(process_env, org_id, "streamed")

        frame = next(frames)
        assert (frame["event"], frame["id"]) == ("sync_progress", str(seq))
        assert json.loads(frame["data"])["data"]["run"]["marker"] == "streamed"
        assert _next(socket)["seq"] == seq
    assert _group_members(org_id) == 1  # lingers a while after its last client (realtime.hub)
