"""Events in order for one client, whatever the channel layer did to them.

Copies arrive from the group duplicated, out of order (two publishers' commit callbacks race)
or not at all. A `Sequencer` knows the last number its client has; a copy that is the next one
is passed on, an older one dropped, and one further ahead means a gap, filled from the log
before it is passed on. When the log no longer holds the gap (or it is too long), the answer
is None: the client needs a snapshot.

Every event below a committed one is committed (`realtime.events`), so a gap seen through a
copy can always be read back.

An `Inbox` takes the copies the process's hub (`realtime.hub`) hands one client and passes them
on one at a time, in the order they came.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async

from realtime.events import event_latest_seq, event_window

logger = logging.getLogger(__name__)

# Every connection checks the tail at each heartbeat; the process reads it once for all of them.
LATEST_SEQ_MEMO_SECONDS = 1.0

_LATEST: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Future[int]]]]
_LATEST = weakref.WeakKeyDictionary()


async def latest_seq(organization_id: str) -> int:
    """The organization's newest number, read at most once a LATEST_SEQ_MEMO_SECONDS per
    process (callers meanwhile share the read in flight or its answer)."""
    memo = _LATEST.setdefault(asyncio.get_running_loop(), {})
    now = time.monotonic()
    found = memo.get(organization_id)
    if found is None or now - found[0] > LATEST_SEQ_MEMO_SECONDS or _failed(found[1]):
        read = asyncio.ensure_future(database_sync_to_async(event_latest_seq)(organization_id))
        found = memo[organization_id] = (now, read)
    return await asyncio.shield(found[1])


def _failed(read: asyncio.Future[int]) -> bool:
    return read.done() and (read.cancelled() or read.exception() is not None)


class Sequencer:
    def __init__(self, organization_id: str, *, last_seq: int, max_events: int) -> None:
        self.organization_id = organization_id
        self.last_seq = last_seq
        self.max_events = max_events

    async def arrived(self, event: dict[str, Any]) -> list[dict[str, Any]] | None:
        """What to send the client for a copy from the group (None: a snapshot)."""
        seq = event.get("seq")
        if not isinstance(seq, int) or seq <= self.last_seq:
            return []
        if seq == self.last_seq + 1:
            self.last_seq = seq
            return [event]
        return await self.catch_up()

    async def check(self) -> list[dict[str, Any]] | None:
        """What the client is missing at the tail (a lost last copy): one cheap read when none."""
        latest = await latest_seq(self.organization_id)
        return await self.catch_up() if latest > self.last_seq else []

    async def catch_up(self) -> list[dict[str, Any]] | None:
        return await self.replay(self.last_seq)

    async def replay(self, since: int) -> list[dict[str, Any]] | None:
        """The events after `since` from the log (None: gone, or too many to be worth it)."""
        window = await database_sync_to_async(event_window)(
            self.organization_id, since=since, limit=self.max_events
        )
        if window.snapshot_required or window.has_more:
            return None
        newest = window.events[-1].seq if window.events else window.latest_seq
        self.last_seq = max(self.last_seq, newest)
        return [event.message() for event in window.events]

    def restart(self, seq: int) -> None:
        """The client was sent a snapshot as of `seq`."""
        self.last_seq = max(self.last_seq, seq)


class Inbox:
    """Copies for one client, passed to `handle` one at a time in the order they came. A
    client too slow to keep up loses the copies beyond `limit`: its sequencer sees the gap in
    the next copy it takes (or at its next check) and reads what is missing from the log."""

    def __init__(self, handle: Callable[[dict[str, Any]], Awaitable[None]], *, limit: int = 256) -> None:
        self.handle = handle
        self.limit = limit
        self.queue: deque[dict[str, Any]] = deque()
        self.task: asyncio.Task[None] | None = None
        self.dropped = 0

    def put(self, message: dict[str, Any]) -> None:
        if len(self.queue) >= self.limit:
            self.dropped += 1
            return
        self.queue.append(message)
        if self.task is None:
            self.task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            while self.queue:
                await self.handle(self.queue.popleft())
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("a live update could not be passed on")
        finally:
            self.task = None
            # A failure left copies behind: the next one to come starts a new drain.

    def close(self) -> None:
        self.queue.clear()
        if self.task is not None:
            self.task.cancel()
