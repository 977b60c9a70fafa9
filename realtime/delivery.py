"""Events in order for one client, whatever the channel layer did to them.

Copies arrive from the group duplicated, out of order (two publishers' commit callbacks race)
or not at all. A `Sequencer` knows the last number its client has; a copy that is the next one
is passed on, an older one dropped, and one further ahead means a gap, filled from the log
before it is passed on. When the log no longer holds the gap (or it is too long), the answer
is None: the client needs a snapshot.

Every event below a committed one is committed (`realtime.events`), so a gap seen through a
copy can always be read back.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from realtime.events import event_latest_seq, event_window


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
        latest = await database_sync_to_async(event_latest_seq)(self.organization_id)
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
