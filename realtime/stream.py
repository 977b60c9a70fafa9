"""Server-Sent Events on the event log: the frames, and the stream itself.

Under ASGI the stream is an async generator that holds no database connection while it waits:
it listens on the organization's group through the process's hub (`realtime.hub`), reads the log (in short
`database_sync_to_async` calls, each giving its connection back) to fill gaps, checks the tail
every REALTIME_SSE_POLL_SECONDS in case the layer dropped the last copy, and writes a comment
every REALTIME_HEARTBEAT_SECONDS. It ends after REALTIME_SSE_MAX_AGE_SECONDS, or when the token
it was opened with expires; the client reconnects with `Last-Event-ID` (EventSource does so by
itself) and carries on from there.

Under WSGI a request cannot wait without holding a worker thread, so the stream sends what is
missing (or a snapshot) and ends at once: the client reconnects after `retry`, like polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from realtime.delivery import Sequencer
from realtime.events import GROUP_MESSAGE, event_window, group_name
from realtime.hub import hub_for
from realtime.protocol import Limits
from realtime.snapshot import snapshot_build

# How long EventSource waits before reconnecting (milliseconds).
RETRY_MILLISECONDS = 2000
HEARTBEAT = ": heartbeat\n\n"


def frame(event_id: int, event: str, data: str) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n"


def event_frame(message: dict[str, Any]) -> str:
    return frame(message["seq"], message["type"], json.dumps(message, separators=(",", ":")))


def snapshot_frame(organization_id: str) -> tuple[int, str]:
    seq, text = snapshot_build(organization_id)
    return seq, frame(seq, "snapshot", text)


def opening_frames(organization_id: str, *, since: int | None, max_events: int) -> tuple[int, list[str]]:
    """(last seq sent, frames): the events after `since`, or a snapshot when there is no
    `since`, or it is older than the log keeps, or too much is missing."""
    if since is not None:
        window = event_window(organization_id, since=since, limit=max_events)
        if not (window.snapshot_required or window.has_more):
            last = window.events[-1].seq if window.events else since
            return last, [event_frame(event.message()) for event in window.events]
    seq, text = snapshot_frame(organization_id)
    return seq, [text]


def sync_stream(organization_id: str, *, since: int | None) -> Iterator[str]:
    """The WSGI stream: what is missing now, then the end."""
    _, frames = opening_frames(
        organization_id, since=since, max_events=Limits.from_settings().resync_max_events
    )
    yield f"retry: {RETRY_MILLISECONDS}\n\n"
    yield from frames


class _Listener:
    """The stream's place in the hub: copies wait in a bounded queue (beyond it they are
    dropped, and the gap is read from the log)."""

    REJOINED = {"type": "hub.rejoined"}

    def __init__(self, limit: int = 256) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(limit)

    def hub_message(self, message: dict[str, Any]) -> None:
        if message.get("type") == GROUP_MESSAGE:
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(message)

    def hub_rejoined(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(self.REJOINED)


async def _frames(sequencer: Sequencer, events: list[dict[str, Any]] | None) -> list[str]:
    if events is None:
        seq, text = await database_sync_to_async(snapshot_frame)(sequencer.organization_id)
        sequencer.restart(seq)
        return [text]
    return [event_frame(event) for event in events]


async def event_stream(
    organization_id: str, *, since: int | None, expires_at: int | None
) -> AsyncIterator[str]:
    """The ASGI stream (see the module docstring)."""
    limits = Limits.from_settings()
    lifetime = limits.sse_max_age
    if expires_at is not None:
        lifetime = min(lifetime, max(1.0, expires_at - time.time()))
    deadline = time.monotonic() + lifetime
    layer = get_channel_layer()
    group = group_name(organization_id)
    hub = hub_for(layer) if layer is not None else None
    listener = _Listener()
    try:
        if hub is not None:
            # Joined before the opening frames are read: nothing after them can be missed.
            await hub.join(group, listener)
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        last, frames = await database_sync_to_async(opening_frames)(
            organization_id, since=since, max_events=limits.resync_max_events
        )
        for text in frames:
            yield text
        sequencer = Sequencer(organization_id, last_seq=last, max_events=limits.resync_max_events)
        now = time.monotonic()
        next_heartbeat, next_poll = now + limits.heartbeat, now + limits.sse_poll
        while (now := time.monotonic()) < deadline:
            wait = min(next_heartbeat, next_poll, deadline) - now
            message = None
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(listener.queue.get(), wait)
            if message is listener.REJOINED:
                next_poll = 0.0  # the layer may have dropped copies meanwhile: look at the log now
            elif message is not None:
                for text in await _frames(sequencer, await sequencer.arrived(message["event"])):
                    yield text
            now = time.monotonic()
            if now >= next_poll:
                for text in await _frames(sequencer, await sequencer.check()):
                    yield text
                next_poll = now + limits.sse_poll
            if now >= next_heartbeat:
                yield HEARTBEAT
                next_heartbeat = now + limits.heartbeat
    finally:
        if hub is not None:
            hub.leave(group, listener)
