"""realtime.layers.PostgresChannelLayer against the test database.

The layer is built here rather than taken from settings, so these tests run in the Redis
pass too. Async code runs under asyncio.run, as it does under async_to_sync.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from channels.exceptions import ChannelFull
from channels.layers import channel_layers
from django.db import connection

from realtime.layers import GROUPS, MESSAGES, PostgresChannelLayer, connection_kwargs
from realtime.models import ChannelGroupMember, ChannelMessage

pytestmark = pytest.mark.django_db(transaction=True)


def make_layer(**config: Any) -> PostgresChannelLayer:
    return PostgresChannelLayer(database=connection.settings_dict, **{"prefix": "test", **config})


def run(scenario: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return asyncio.run(scenario(*args))


async def nothing_arrives(layer: PostgresChannelLayer, channel: str, within: float = 0.5) -> bool:
    try:
        await asyncio.wait_for(layer.receive(channel), timeout=within)
    except TimeoutError:
        return True
    return False


def test_a_message_sent_before_anyone_receives_is_delivered():
    layer = make_layer()

    async def scenario() -> dict[str, Any]:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "hello", "text": "zoë", "raw": b"\x00\xff"})
        return await asyncio.wait_for(layer.receive(channel), timeout=5)

    assert run(scenario) == {"type": "hello", "text": "zoë", "raw": b"\x00\xff"}


def test_a_waiting_receiver_gets_a_message_promptly():
    layer = make_layer()

    async def scenario() -> tuple[dict[str, Any], float]:
        channel = await layer.new_channel()
        receiving = asyncio.create_task(layer.receive(channel))
        await asyncio.sleep(0.3)  # the receiver has found nothing and is waiting
        assert not receiving.done()
        started = time.perf_counter()
        await layer.send(channel, {"type": "late"})
        message = await asyncio.wait_for(receiving, timeout=5)
        return message, time.perf_counter() - started

    message, elapsed = run(scenario)
    assert message == {"type": "late"}
    assert elapsed < 1


def test_messages_arrive_in_the_order_they_were_sent():
    layer = make_layer()

    async def scenario() -> list[int]:
        await layer.send("orders", {"type": "first", "n": -1})  # a named, not process-specific, channel
        for n in range(30):
            await layer.send("orders", {"type": "n", "n": n})
        return [(await layer.receive("orders"))["n"] for _ in range(31)]

    assert run(scenario) == [-1, *range(30)]


def test_concurrent_receivers_in_two_processes_never_share_a_message():
    # Two layer instances stand for two processes: separate connections and LISTEN sessions.
    first, second = make_layer(), make_layer()
    received: list[int] = []

    async def drain(layer: PostgresChannelLayer) -> None:
        while True:
            received.append((await layer.receive("work"))["n"])

    async def scenario() -> None:
        receivers = [asyncio.create_task(drain(layer)) for layer in (first, first, second, second)]
        await asyncio.sleep(0.2)
        await asyncio.gather(*(first.send("work", {"type": "job", "n": n}) for n in range(40)))
        deadline = time.monotonic() + 10
        while len(received) < 40 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # room for a duplicate to show up
        for receiver in receivers:
            receiver.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)

    run(scenario)
    assert sorted(received) == list(range(40))


def test_group_send_reaches_the_members_until_they_leave():
    layer = make_layer()

    async def scenario() -> None:
        alice, bob = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("org.1.metrics", alice)
        await layer.group_add("org.1.metrics", bob)
        await layer.group_add("org.1.metrics", bob)  # renewing is not joining twice
        await layer.group_add("org.2.metrics", bob)
        await layer.group_send("org.1.metrics", {"type": "metrics.updated", "seq": 1})
        assert await layer.receive(alice) == {"type": "metrics.updated", "seq": 1}
        assert await layer.receive(bob) == {"type": "metrics.updated", "seq": 1}
        assert await nothing_arrives(layer, bob, within=0.3)

        await layer.group_discard("org.1.metrics", bob)
        await layer.group_send("org.1.metrics", {"type": "metrics.updated", "seq": 2})
        assert await layer.receive(alice) == {"type": "metrics.updated", "seq": 2}
        assert await nothing_arrives(layer, bob, within=0.3)
        await layer.group_send("nobody.here", {"type": "lost"})

    run(scenario)
    assert ChannelGroupMember.objects.count() == 2


def test_expired_messages_and_memberships_are_not_delivered_and_get_swept():
    layer = make_layer(expiry=0.2, group_expiry=0.2)

    async def scenario() -> None:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "stale"})
        await layer.group_add("gone", channel)
        await asyncio.sleep(0.4)
        assert await nothing_arrives(layer, channel, within=0.3)
        await layer.group_send("gone", {"type": "to.nobody"})
        assert await nothing_arrives(layer, channel, within=0.3)

    run(scenario)
    # The first send swept (too early to find anything); make the next sweep due now.
    layer._next_sweep = 0.0
    run(layer.send, "other", {"type": "fresh"})
    assert list(ChannelMessage.objects.values_list("channel", flat=True)) == ["test:other"]
    assert not ChannelGroupMember.objects.exists()


def test_a_full_channel_refuses_messages_until_one_is_received():
    layer = make_layer(capacity=3)

    async def scenario() -> None:
        for n in range(3):
            await layer.send("busy", {"type": "n", "n": n})
        with pytest.raises(ChannelFull):
            await layer.send("busy", {"type": "n", "n": 3})
        assert (await layer.receive("busy"))["n"] == 0
        await layer.send("busy", {"type": "n", "n": 3})

    run(scenario)
    assert ChannelMessage.objects.count() == 3


def test_flush_empties_both_tables():
    layer = make_layer()

    async def scenario() -> None:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "x"})
        await layer.group_add("g", channel)
        await layer.flush()
        assert await nothing_arrives(layer, channel, within=0.3)

    run(scenario)
    assert not ChannelMessage.objects.exists()
    assert not ChannelGroupMember.objects.exists()


def test_connection_settings_come_from_a_django_database_entry():
    database = {
        "NAME": "routiq",
        "USER": "app",
        "PASSWORD": "",
        "HOST": "/run/routiq/pg",  # the embedded server's unix-socket directory
        "PORT": "5433",
        "OPTIONS": {"pool": {"min_size": 1}, "isolation_level": 1, "sslmode": "disable"},
    }
    kwargs = connection_kwargs(database)
    assert kwargs["dbname"] == "routiq" and kwargs["host"] == "/run/routiq/pg" and kwargs["port"] == "5433"
    assert kwargs["password"] is None and kwargs["sslmode"] == "disable"
    assert "pool" not in kwargs and "isolation_level" not in kwargs


def test_the_tables_are_the_models_tables():
    assert ChannelMessage._meta.db_table == MESSAGES
    assert ChannelGroupMember._meta.db_table == GROUPS


def test_one_layer_serves_event_loops_one_after_another_and_lets_them_go():
    layer = make_layer()

    async def round_trip(n: int) -> int:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "n", "n": n})
        message = await asyncio.wait_for(layer.receive(channel), timeout=5)
        state = layer._states[asyncio.get_running_loop()]
        assert state.waiters == {}  # nothing kept per channel once nobody waits
        return message["n"]

    assert run(round_trip, 1) == 1
    assert layer._states == {}  # the loop's connections were closed with it
    assert run(round_trip, 2) == 2
    assert layer._states == {}


def test_a_cancelled_receive_leaves_nothing_behind():
    layer = make_layer()

    async def scenario() -> dict[str, Any]:
        assert await nothing_arrives(layer, "quiet", within=0.2)
        return layer._states[asyncio.get_running_loop()].waiters

    assert run(scenario) == {}


def test_delivery_survives_the_server_ending_the_layers_sessions():
    layer = make_layer()

    async def scenario() -> dict[str, Any]:
        await layer.send("warmup", {"type": "warmup"})
        await layer.receive("warmup")  # now there is an idle connection and a LISTEN one
        receiving = asyncio.create_task(layer.receive("after"))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(terminate_layer_sessions)
        await asyncio.sleep(0.2)
        await layer.send("after", {"type": "after.restart"})
        return await asyncio.wait_for(receiving, timeout=5)

    assert run(scenario) == {"type": "after.restart"}


def terminate_layer_sessions() -> None:
    import psycopg

    with psycopg.connect(**connection_kwargs(connection.settings_dict), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'routiq-channel-layer'"
            " AND pid <> pg_backend_pid()"
        )


@pytest.mark.parametrize(
    "operation",
    [
        lambda layer: layer.send("has space", {"type": "x"}),
        lambda layer: layer.send("x" * 100, {"type": "x"}),
        lambda layer: layer.receive("bad/name"),
        lambda layer: layer.group_add("bad group", "fine"),
        lambda layer: layer.group_add("fine", "bad channel"),
        lambda layer: layer.group_send("bad!group", {"type": "x"}),
        lambda layer: layer.send("fine", "not a dict"),
    ],
)
def test_invalid_names_and_messages_are_refused(operation):
    with pytest.raises(TypeError):
        run(operation, make_layer())


def test_the_health_check_passes_again_and_again(monkeypatch):
    from routiq.health import check_channel_layer

    monkeypatch.setitem(channel_layers.backends, "default", make_layer(prefix="routiq"))
    assert [check_channel_layer() for _ in range(3)] == ["PostgresChannelLayer"] * 3


def test_a_keeper_finalized_while_the_loop_state_is_taken_does_not_deadlock():
    """The garbage collector may finalize the keeper of a loop closed without cancelling its
    tasks inside _loop_state (an allocation there starts a collection), on the same thread:
    the keeper's cleanup takes the same lock. It once waited forever there (a CI run hung)."""
    import threading

    from realtime.layers import _LoopState

    layer = make_layer()
    dead_loop = asyncio.new_event_loop()
    state = _LoopState(slots=asyncio.Semaphore(1))
    with layer._states_lock:
        layer._states[dead_loop] = state
    keeper = layer._keep(dead_loop, state)
    keeper.send(None)  # started, waiting on its loop's future, as a running loop leaves it
    dead_loop.close()
    finished = []

    def take_state() -> None:
        with layer._states_lock:  # as _loop_state holds it...
            keeper.close()  # ...when the collector finalizes the keeper
        finished.append(dead_loop not in layer._states)

    worker = threading.Thread(target=take_state, daemon=True)
    worker.start()
    worker.join(5)
    assert finished == [True]
