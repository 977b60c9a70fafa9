"""The process's hub on the configured channel layer (Redis, or PostgreSQL in the embedded
setup): one membership per group for all of a process's listeners, handed out in order, left
after a linger, renewed, and re-made when the layer fails; and a connection's inbox."""

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from realtime import delivery, hub
from realtime.delivery import Inbox
from realtime.events import EventType, publish
from realtime.hub import Hub, hub_for
from realtime.tests.conftest import next_message
from realtime.tests.test_consumer import connected_socket, token

pytestmark = pytest.mark.django_db(transaction=True)

GROUP = "hub-test.group"


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.rejoins = 0
        self.arrived = asyncio.Event()

    def hub_message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self.arrived.set()

    def hub_rejoined(self) -> None:
        self.rejoins += 1
        self.arrived.set()

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        async def enough() -> None:
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)


class CountingLayer:
    """The real layer, its membership calls counted; `fail_receives` makes receives raise."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.added: list[tuple[str, str]] = []
        self.discarded: list[tuple[str, str]] = []
        self.fail_receives = 0
        self.fail_adds = 0
        self.group_expiry = getattr(layer, "group_expiry", 86400)

    async def new_channel(self) -> str:
        return await self.layer.new_channel()

    async def group_add(self, group: str, channel: str) -> None:
        if self.fail_adds:
            self.fail_adds -= 1
            raise ConnectionError("the layer is down")
        self.added.append((group, channel))
        await self.layer.group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self.discarded.append((group, channel))
        await self.layer.group_discard(group, channel)

    async def receive(self, channel: str) -> dict[str, Any]:
        if self.fail_receives:
            self.fail_receives -= 1
            await asyncio.sleep(0.05)
            raise ConnectionError("the layer is down")
        return await self.layer.receive(channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self.layer.group_send(group, message)


def message(n: int) -> dict[str, Any]:
    return {"type": "realtime.event", "event": {"seq": n}}


def test_one_membership_serves_every_listener_of_the_process_in_order():
    async def scenario():
        layer = CountingLayer(get_channel_layer())
        the_hub = Hub(layer)
        first, second = Recorder(), Recorder()
        await asyncio.gather(the_hub.join(GROUP, first), the_hub.join(GROUP, second))
        for n in range(1, 6):
            await layer.group_send(GROUP, message(n))
        await first.wait_for(5)
        await second.wait_for(5)
        the_hub.leave(GROUP, first)
        the_hub.leave(GROUP, second)
        return layer, first, second

    layer, first, second = asyncio.run(scenario())
    assert len(layer.added) == 1  # one layer membership for both listeners
    assert [m["event"]["seq"] for m in first.messages] == [1, 2, 3, 4, 5]
    assert second.messages == first.messages


def test_the_membership_lingers_after_its_last_listener_then_leaves_the_group():
    async def scenario():
        layer = CountingLayer(get_channel_layer())
        the_hub = Hub(layer)
        the_hub.linger_seconds = 0.2
        listener = Recorder()
        await the_hub.join(GROUP, listener)
        the_hub.leave(GROUP, listener)
        await the_hub.join(GROUP, listener)  # back within the linger (a reloaded page)
        rejoined_in_time = len(layer.added) == 1 and GROUP in the_hub.memberships
        the_hub.leave(GROUP, listener)
        await asyncio.sleep(0.6)
        return layer, the_hub, rejoined_in_time

    layer, the_hub, rejoined_in_time = asyncio.run(scenario())
    assert rejoined_in_time
    assert GROUP not in the_hub.memberships
    assert layer.discarded == layer.added  # the process left the group it had joined


def test_a_failed_layer_is_joined_again_on_a_new_channel_and_listeners_are_told(monkeypatch):
    monkeypatch.setattr(hub, "RETRY_FIRST_SECONDS", 0.05)

    async def scenario():
        layer = CountingLayer(get_channel_layer())
        the_hub = Hub(layer)
        listener = Recorder()
        layer.fail_receives = 2
        await the_hub.join(GROUP, listener)
        async with asyncio.timeout(10):
            while listener.rejoins < 2 or layer.fail_receives:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # the third channel's receive is waiting
        await layer.group_send(GROUP, message(1))
        await listener.wait_for(1)
        the_hub.leave(GROUP, listener)
        return layer, listener

    layer, listener = asyncio.run(scenario())
    channels = [channel for _, channel in layer.added]
    assert len(channels) == 3 and len(set(channels)) == 3
    assert listener.rejoins == 2
    assert layer.discarded[:2] == layer.added[:2]  # the failed channels' memberships were dropped
    assert [m["event"]["seq"] for m in listener.messages] == [1]


def test_a_first_join_the_layer_refuses_fails_its_joiners_and_the_next_one_tries_again():
    async def scenario():
        layer = CountingLayer(get_channel_layer())
        the_hub = Hub(layer)
        layer.fail_adds = 1
        first = Recorder()
        with pytest.raises(ConnectionError):
            await the_hub.join(GROUP, first)
        gone = GROUP not in the_hub.memberships
        second = Recorder()
        await the_hub.join(GROUP, second)
        await layer.group_send(GROUP, message(7))
        await second.wait_for(1)
        the_hub.leave(GROUP, second)
        return gone, first, second

    gone, first, second = asyncio.run(scenario())
    assert gone and first.messages == []
    assert [m["event"]["seq"] for m in second.messages] == [7]


def test_the_membership_is_renewed_before_the_group_expires():
    async def scenario():
        layer = CountingLayer(get_channel_layer())
        layer.group_expiry = 0.4  # renewed every 0.2 s
        the_hub = Hub(layer)
        listener = Recorder()
        await the_hub.join(GROUP, listener)
        await asyncio.sleep(0.9)
        await layer.group_send(GROUP, message(1))
        await listener.wait_for(1)
        the_hub.leave(GROUP, listener)
        return layer

    layer = asyncio.run(scenario())
    assert len(layer.added) >= 4
    assert len({channel for _, channel in layer.added}) == 1  # the same membership, renewed


def test_hubs_are_per_event_loop():
    async def hub_of_this_loop():
        layer = get_channel_layer()
        return hub_for(layer), hub_for(layer)

    one, same = asyncio.run(hub_of_this_loop())
    other, _ = asyncio.run(hub_of_this_loop())
    assert one is same and other is not one


# --- through the consumer ---------------------------------------------------------------------------
def test_sockets_of_one_process_share_the_membership_and_catch_up_after_a_rejoin(
    world, live, layer_drops
):
    async def scenario():
        sockets = [(await connected_socket(world.org_a.pk, token=token(world.org_a.pk)))[0] for _ in range(3)]
        the_hub = hub_for(get_channel_layer())
        members = the_hub.listener_count(f"org.{world.org_a.pk}.metrics")
        await database_sync_to_async(publish)(world.org_a, EventType.SYNC_PROGRESS, {"n": 1})
        delivered = [await next_message(socket) for socket in sockets]
        # A copy the layer lost while the membership was being re-made: the rejoin finds it in the log.
        layer_drops.on = True
        await database_sync_to_async(publish)(world.org_a, EventType.SYNC_PROGRESS, {"n": 2})
        the_hub._tell_rejoined(the_hub.memberships[f"org.{world.org_a.pk}.metrics"])
        caught_up = [await next_message(socket, timeout=5) for socket in sockets]
        for socket in sockets:
            await socket.disconnect()
        await asyncio.sleep(0.1)
        return members, delivered, caught_up, the_hub.listener_count(f"org.{world.org_a.pk}.metrics")

    members, delivered, caught_up, left = asyncio.run(scenario())
    assert members == 3
    assert [(m["type"], m["seq"]) for m in delivered] == [("sync_progress", 1)] * 3
    assert [(m["type"], m["seq"], m["data"]) for m in caught_up] == [("sync_progress", 2, {"n": 2})] * 3
    assert left == 0


# --- a connection's inbox ---------------------------------------------------------------------------
def test_an_inbox_hands_copies_on_one_at_a_time_in_order_and_drops_beyond_its_limit():
    async def scenario():
        handled: list[int] = []
        busy = 0
        overlapped = False

        async def handle(message: dict[str, Any]) -> None:
            nonlocal busy, overlapped
            busy += 1
            overlapped = overlapped or busy > 1
            await asyncio.sleep(0.001)
            handled.append(message["event"]["seq"])
            busy -= 1

        inbox = Inbox(handle, limit=5)
        for n in range(1, 9):
            inbox.put(message(n))
        await asyncio.sleep(0.2)
        inbox.put(message(9))  # room again
        await asyncio.sleep(0.1)
        return handled, overlapped, inbox.dropped

    handled, overlapped, dropped = asyncio.run(scenario())
    assert handled == [1, 2, 3, 4, 5, 9] and dropped == 3
    assert not overlapped


def test_a_failing_handler_does_not_stop_later_copies(caplog):
    async def scenario():
        handled: list[int] = []

        async def handle(message: dict[str, Any]) -> None:
            if message["event"]["seq"] == 1:
                raise RuntimeError("boom")
            handled.append(message["event"]["seq"])

        inbox = Inbox(handle)
        inbox.put(message(1))
        await asyncio.sleep(0.05)
        inbox.put(message(2))
        await asyncio.sleep(0.05)
        return handled

    assert asyncio.run(scenario()) == [2]
    assert "could not be passed on" in caplog.text


def test_the_latest_number_is_read_once_a_moment_for_every_connection(world, monkeypatch):
    for n in range(3):
        publish(world.org_a, EventType.SYNC_PROGRESS, {"n": n})
    reads = []
    real = delivery.event_latest_seq
    monkeypatch.setattr(delivery, "event_latest_seq", lambda org_id: reads.append(org_id) or real(org_id))

    async def scenario():
        together = await asyncio.gather(*(delivery.latest_seq(world.org_a.pk) for _ in range(50)))
        after = await delivery.latest_seq(world.org_a.pk)  # the answer, still fresh
        await database_sync_to_async(publish)(world.org_a, EventType.SYNC_PROGRESS, {"n": 3})
        await asyncio.sleep(delivery.LATEST_SEQ_MEMO_SECONDS + 0.1)
        return together, after, await delivery.latest_seq(world.org_a.pk)

    together, after, later = asyncio.run(scenario())
    assert together == [3] * 50 and after == 3 and later == 4
    assert reads == [world.org_a.pk] * 2
