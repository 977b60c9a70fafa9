"""One channel-layer membership per organization per server process, shared by its clients.

When every WebSocket joined its organization's group itself, one event became one layer
message per connection: channels_redis woke each receiving consumer, and Channels dispatched
each copy through its own tasks. At 1,000 connections an event took tens of seconds to reach
the last of them and channels overflowed (bench/bench_realtime.py). Here the process joins an
organization's group once, on the first connection, receives each event once, and hands it
to the connections of this process that listen (`Listener`).

The membership is renewed before the layer's group expiry, left a little after its last
listener goes (a reloaded page comes straight back), and re-made on a new channel when the
layer fails; after that every listener is told to check the event log, the source of truth,
for what the layer may have dropped meanwhile.

A hub belongs to one event loop (the server's; each test has its own): `hub_for(layer)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

# How long a membership outlives its last listener.
LINGER_SECONDS = 30.0
# Renewed at least this often, and always well before the layer's group expiry.
RENEW_SECONDS = 3600.0
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


class Listener(Protocol):
    def hub_message(self, message: dict[str, Any]) -> None:
        """A message to the group. Called in the loop: must not block, nor raise."""

    def hub_rejoined(self) -> None:
        """The membership was lost and made again: messages may have been dropped meanwhile."""


@dataclass(eq=False)
class _Membership:
    group: str
    listeners: set[Listener] = field(default_factory=set)
    joined: asyncio.Future[None] | None = None  # set once the first join is made (or failed)
    pump: asyncio.Task[None] | None = None
    linger: asyncio.TimerHandle | None = None


class Hub:
    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.loop = asyncio.get_running_loop()
        self.memberships: dict[str, _Membership] = {}
        expiry = float(getattr(layer, "group_expiry", 86400) or 86400)
        self.renew_seconds = min(RENEW_SECONDS, expiry / 2)
        self.linger_seconds = LINGER_SECONDS

    async def join(self, group: str, listener: Listener) -> None:
        """Listen to `group`; returns once this process is a member, so that nothing sent to
        the group afterwards is missed (raises if the layer refuses the first join)."""
        membership = self.memberships.get(group)
        if membership is None:
            membership = self.memberships[group] = _Membership(group)
            membership.joined = self.loop.create_future()
            membership.pump = asyncio.ensure_future(self._pump(membership))
        if membership.linger is not None:
            membership.linger.cancel()
            membership.linger = None
        membership.listeners.add(listener)
        try:
            await asyncio.shield(membership.joined)
        except BaseException:
            membership.listeners.discard(listener)
            raise

    def leave(self, group: str, listener: Listener) -> None:
        membership = self.memberships.get(group)
        if membership is None:
            return
        membership.listeners.discard(listener)
        if not membership.listeners and membership.linger is None:
            membership.linger = self.loop.call_later(self.linger_seconds, self._end_if_unheard, membership)

    def listener_count(self, group: str) -> int:
        membership = self.memberships.get(group)
        return len(membership.listeners) if membership else 0

    def _end_if_unheard(self, membership: _Membership) -> None:
        membership.linger = None
        if membership.listeners or self.memberships.get(membership.group) is not membership:
            return
        del self.memberships[membership.group]
        if membership.pump is not None:
            membership.pump.cancel()

    # --- the one receiver per membership -----------------------------------------------------------
    async def _pump(self, membership: _Membership) -> None:
        layer, group = self.layer, membership.group
        channel: str | None = None
        pending: asyncio.Future[dict[str, Any]] | None = None
        retry = RETRY_FIRST_SECONDS
        try:
            while True:
                try:
                    if channel is None:
                        channel = await layer.new_channel()
                        await layer.group_add(group, channel)
                        renew_at = time.monotonic() + self.renew_seconds
                        if not membership.joined.done():
                            membership.joined.set_result(None)
                        else:
                            self._tell_rejoined(membership)
                        retry = RETRY_FIRST_SECONDS
                    # One receive stays pending across renewals: cancelling it could lose a message.
                    pending = pending or asyncio.ensure_future(layer.receive(channel))
                    done, _ = await asyncio.wait({pending}, timeout=max(0.0, renew_at - time.monotonic()))
                    if done:
                        message, pending = pending.result(), None
                        self._hand_out(membership, message)
                    if time.monotonic() >= renew_at:
                        await layer.group_add(group, channel)
                        renew_at = time.monotonic() + self.renew_seconds
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not membership.joined.done():
                        # Nobody is a member yet: the joiners hear of it, the next one tries again.
                        membership.joined.set_exception(exc)
                        if self.memberships.get(group) is membership:
                            del self.memberships[group]
                        return
                    logger.warning(
                        "channel layer failed for %s (%s); joining again in %.1f s", group, exc, retry
                    )
                    if pending is not None:
                        pending.cancel()
                        pending = None
                    await self._discard(group, channel)
                    channel = None
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, RETRY_MAX_SECONDS)
        finally:
            if pending is not None:
                pending.cancel()
            if channel is not None:
                # Leaving is best effort: an unheard membership also expires by itself.
                with contextlib.suppress(BaseException):
                    await asyncio.shield(self._discard(group, channel))

    async def _discard(self, group: str, channel: str | None) -> None:
        if channel is not None:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(group, channel)

    def _hand_out(self, membership: _Membership, message: dict[str, Any]) -> None:
        for listener in list(membership.listeners):
            try:
                listener.hub_message(message)
            except Exception:
                logger.exception("a listener of %s failed to take a message", membership.group)

    def _tell_rejoined(self, membership: _Membership) -> None:
        for listener in list(membership.listeners):
            try:
                listener.hub_rejoined()
            except Exception:
                logger.exception("a listener of %s failed to hear of a rejoin", membership.group)


_HUBS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Hub]] = weakref.WeakKeyDictionary()


def hub_for(layer: Any) -> Hub:
    """The running loop's hub on `layer`."""
    hubs = _HUBS.setdefault(asyncio.get_running_loop(), {})
    hub = hubs.get(id(layer))
    if hub is None or hub.layer is not layer:
        hub = hubs[id(layer)] = Hub(layer)
    return hub
