"""A Channels layer on PostgreSQL, used when there is no Redis.

Messages are rows (`realtime.models`). `send` inserts one and NOTIFYs its channel in the same
statement; `receive` deletes the oldest unexpired row of its channel (`FOR UPDATE SKIP LOCKED`,
so two receivers never get one message) and waits for a NOTIFY only when there is none. A
message sent before anyone listened is therefore still delivered: delivery never depends on
timing, which is what broke channels_postgres for us.

asyncio objects cannot cross event loops, and `async_to_sync` runs a new loop per call, so
everything that touches a connection belongs to one loop: a few connections for short
statements and, once something receives, one LISTEN connection whose dispatcher wakes the
receivers of the notified channel. They are closed when their loop shuts down.

Like every Channels layer, this one delivers at most once (a receive cancelled while its
claim is in flight loses that message); state of record lives elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import psycopg
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer
from psycopg import sql

logger = logging.getLogger(__name__)

MESSAGES = "realtime_channel_message"  # realtime.models.ChannelMessage
GROUPS = "realtime_channel_group"  # realtime.models.ChannelGroupMember
# Keys of a Django DATABASES["OPTIONS"] dict that are Django's, not libpq's.
DJANGO_ONLY_OPTIONS = frozenset({"pool", "isolation_level", "server_side_binding", "assume_role"})
# A waiting receiver re-reads its channel this often even without a NOTIFY: a safety net for a
# LISTEN connection that died silently. While the listener is reconnecting it polls every second.
RECHECK_SECONDS = 30.0
SWEEP_SECONDS = 60.0  # expired rows are deleted at most this often per layer

# The capacity check and the insert are one statement; concurrent senders may overshoot it
# slightly, which only matters for a channel that is already backed up.
SEND = f"""
WITH inserted AS (
    INSERT INTO {MESSAGES} (channel, payload, expires_at)
    SELECT %(channel)s, %(payload)s, now() + make_interval(secs => %(expiry)s)
    WHERE (SELECT count(*) FROM (
        SELECT 1 FROM {MESSAGES} WHERE channel = %(channel)s AND expires_at > now() LIMIT %(capacity)s
    ) AS backlog) < %(capacity)s
    RETURNING channel
)
SELECT pg_notify(%(topic)s, channel) FROM inserted
"""
# Members whose channel is full are skipped, as channels_redis does.
GROUP_SEND = f"""
WITH inserted AS (
    INSERT INTO {MESSAGES} (channel, payload, expires_at)
    SELECT member.channel, %(payload)s, now() + make_interval(secs => %(expiry)s)
    FROM {GROUPS} AS member
    WHERE member.group_name = %(group)s AND member.expires_at > now() AND (SELECT count(*) FROM (
        SELECT 1 FROM {MESSAGES} AS waiting
        WHERE waiting.channel = member.channel AND waiting.expires_at > now() LIMIT %(capacity)s
    ) AS backlog) < %(capacity)s
    RETURNING channel
)
SELECT pg_notify(%(topic)s, channel) FROM (SELECT DISTINCT channel FROM inserted) AS notified
"""
CLAIM = f"""
DELETE FROM {MESSAGES} WHERE id = (
    SELECT id FROM {MESSAGES} WHERE channel = %(channel)s AND expires_at > now()
    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
) RETURNING payload
"""
GROUP_ADD = f"""
INSERT INTO {GROUPS} (group_name, channel, expires_at)
VALUES (%(group)s, %(channel)s, now() + make_interval(secs => %(expiry)s))
ON CONFLICT (group_name, channel) DO UPDATE SET expires_at = EXCLUDED.expires_at
"""
GROUP_DISCARD = f"DELETE FROM {GROUPS} WHERE group_name = %(group)s AND channel = %(channel)s"
SWEEP = f"""
WITH expired AS (DELETE FROM {MESSAGES} WHERE expires_at <= now())
DELETE FROM {GROUPS} WHERE expires_at <= now()
"""
FLUSH = f"TRUNCATE {MESSAGES}, {GROUPS}"


def connection_kwargs(database: Mapping[str, Any]) -> dict[str, Any]:
    """libpq parameters from a Django DATABASES entry (HOST may be a unix-socket directory)."""
    options = {k: v for k, v in (database.get("OPTIONS") or {}).items() if k not in DJANGO_ONLY_OPTIONS}
    return {
        "connect_timeout": 10,
        # The LISTEN connection is silent for long stretches; keepalives notice a dead server.
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "application_name": "routiq-channel-layer",
        **options,
        "dbname": database["NAME"],
        "user": database.get("USER") or None,
        "password": database.get("PASSWORD") or None,
        "host": database.get("HOST") or None,
        "port": database.get("PORT") or None,
    }


@dataclass(eq=False)
class _LoopState:
    """What the layer holds for one event loop."""

    slots: asyncio.Semaphore  # bounds this loop's connections
    idle: list[psycopg.AsyncConnection] = field(default_factory=list)
    # Receivers waiting per channel key; a key is removed when its last receiver leaves.
    waiters: dict[str, set[asyncio.Event]] = field(default_factory=dict)
    listen_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    listener: asyncio.Task[None] | None = None
    listening: bool = False
    keeper: asyncio.Task[None] | None = None

    def wake(self, key: str) -> None:
        for event in self.waiters.get(key, ()):
            event.set()

    def wake_all(self) -> None:
        for events in self.waiters.values():
            for event in events:
                event.set()


class PostgresChannelLayer(BaseChannelLayer):
    """Channels layer with the groups and flush extensions, on two PostgreSQL tables.

    `database` is a Django DATABASES entry (the default database's when omitted). `prefix`
    namespaces channel and group names in the tables and names the NOTIFY channel, so several
    installs can share a database.
    """

    extensions = ["groups", "flush"]

    def __init__(
        self,
        *,
        database: Mapping[str, Any] | None = None,
        prefix: str = "asgi",
        expiry: float = 60,
        capacity: int = 100,
        group_expiry: float = 86400,
        pool_size: int = 4,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity)
        if not self.group_name_regex.match(prefix) or len(prefix) > 63:
            raise ValueError("prefix must be 1-63 ASCII letters, digits, hyphens, underscores or periods")
        if database is None:
            from django.db import connections

            database = connections["default"].settings_dict
        self.prefix = prefix
        self.group_expiry = group_expiry
        self.pool_size = pool_size
        self.client_prefix = uuid.uuid4().hex[:12]
        self._connect_kwargs = connection_kwargs(database)
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        # Loops may run in different threads. Reentrant: a keeper coroutine of a loop that never
        # ran it can be finalized by the garbage collector inside _loop_state, on this thread,
        # and its cleanup takes the lock too (with a plain Lock that thread waited forever).
        self._states_lock = threading.RLock()
        self._next_sweep = 0.0

    # --- The channel layer contract ---------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queues the message on the channel; raises ChannelFull at `capacity` waiting messages."""
        self.require_valid_channel_name(channel)
        rows = await self._run(SEND, {**self._message_params(message), "channel": self._key(channel)})
        if not rows:
            raise ChannelFull(channel)
        await self._sweep_expired()

    async def receive(self, channel: str) -> dict[str, Any]:
        """The oldest unexpired message on the channel, waiting for one if there is none.

        Process-specific names (`new_channel()`) are received whole: each is its own key in
        the table, so there is no per-process demultiplexing and no `receive=True` check."""
        self.require_valid_channel_name(channel)
        key = self._key(channel)
        state = self._loop_state()
        await self._ensure_listening(state)
        woken = asyncio.Event()
        state.waiters.setdefault(key, set()).add(woken)
        try:
            while True:
                # Cleared before reading the table, so a NOTIFY that arrives after the read counts.
                woken.clear()
                rows = await self._run(CLAIM, {"channel": key})
                if rows:
                    return msgpack.unpackb(rows[0][0], raw=False)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), RECHECK_SECONDS if state.listening else 1.0)
        finally:
            waiting = state.waiters[key]
            waiting.discard(woken)
            if not waiting:
                del state.waiters[key]

    async def new_channel(self, prefix: str = "specific") -> str:
        return f"{prefix}.{self.client_prefix}!{uuid.uuid4().hex}"

    async def group_add(self, group: str, channel: str) -> None:
        """Adds (or renews) the membership for `group_expiry` seconds."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        params = {"group": self._key(group), "channel": self._key(channel)}
        await self._run(GROUP_ADD, {**params, "expiry": float(self.group_expiry)})

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        await self._run(GROUP_DISCARD, {"group": self._key(group), "channel": self._key(channel)})

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Queues one copy per current member, in one statement; full members are skipped."""
        self.require_valid_group_name(group)
        await self._run(GROUP_SEND, {**self._message_params(message), "group": self._key(group)})
        await self._sweep_expired()

    async def flush(self) -> None:
        """Empties both tables, for every prefix (tests use it)."""
        await self._run(FLUSH)

    # --- Statements -------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def _message_params(self, message: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(message, dict):
            raise TypeError("a channel layer message must be a dict")
        return {
            "payload": msgpack.packb(message, use_bin_type=True),
            "expiry": float(self.expiry),
            "capacity": self.capacity,
            "topic": self.prefix,
        }

    async def _sweep_expired(self) -> None:
        """Deletes expired rows now and then, so that undelivered messages do not pile up."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        await self._run(SWEEP)

    async def _run(self, query: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Runs one autocommit statement on one of this loop's connections."""
        state = self._loop_state()
        async with state.slots:
            if state.idle:
                try:
                    return await self._execute(state, state.idle.pop(), query, params)
                except psycopg.OperationalError:
                    # The server ended the idle session (restart, idle timeout) before the
                    # statement could run; one retry on a fresh connection.
                    logger.info("channel layer connection was gone; reconnecting")
            connection = await psycopg.AsyncConnection.connect(autocommit=True, **self._connect_kwargs)
            return await self._execute(state, connection, query, params)

    async def _execute(
        self,
        state: _LoopState,
        connection: psycopg.AsyncConnection,
        query: str,
        params: Mapping[str, Any] | None,
    ) -> list[tuple[Any, ...]]:
        try:
            cursor = await connection.execute(query, params)
            rows = await cursor.fetchall() if cursor.description else []
        except BaseException:
            # An error or a cancellation mid-statement leaves the session in an unknown state.
            await connection.close()
            raise
        state.idle.append(connection)
        return rows

    # --- Per-loop state and the LISTEN connection -------------------------------------------

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._states_lock:
            state = self._states.get(loop)
            if state is None:
                # A loop closed without cancelling its tasks never ran its keeper: drop it here.
                for closed in [other for other in self._states if other.is_closed()]:
                    self._states.pop(closed, None)
                state = self._states[loop] = _LoopState(slots=asyncio.Semaphore(self.pool_size))
                state.keeper = loop.create_task(self._keep(loop, state))
        return state

    async def _keep(self, loop: asyncio.AbstractEventLoop, state: _LoopState) -> None:
        """Lives as long as its loop. asyncio.run (and so async_to_sync) cancels every task when
        the loop ends, which is when this loop's connections must be closed."""
        try:
            await loop.create_future()
        finally:
            with self._states_lock:
                if self._states.get(loop) is state:
                    del self._states[loop]
            if state.listener is not None:
                state.listener.cancel()
            while state.idle:
                await state.idle.pop().close()

    async def _ensure_listening(self, state: _LoopState) -> None:
        async with state.listen_lock:
            if state.listener is None or state.listener.done():
                connection = await self._listen_connection()  # raises if the database is down
                state.listening = True
                state.listener = asyncio.get_running_loop().create_task(self._dispatch(state, connection))

    async def _listen_connection(self) -> psycopg.AsyncConnection:
        connection = await psycopg.AsyncConnection.connect(autocommit=True, **self._connect_kwargs)
        try:
            await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.prefix)))
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _dispatch(self, state: _LoopState, connection: psycopg.AsyncConnection) -> None:
        """Wakes the receivers of each notified channel. When the connection drops, it wakes
        every receiver (to re-read the table, then poll) and reconnects, then wakes them again
        for what was sent in between."""
        try:
            while True:
                with contextlib.suppress(psycopg.OperationalError):
                    async for notify in connection.notifies():
                        state.wake(notify.payload)
                logger.warning("channel layer lost its LISTEN connection; reconnecting")
                await connection.close()
                state.listening = False
                state.wake_all()
                connection = await self._reconnect_listener()
                state.listening = True
                state.wake_all()
        finally:
            state.listening = False
            await connection.close()

    async def _reconnect_listener(self) -> psycopg.AsyncConnection:
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            try:
                return await self._listen_connection()
            except psycopg.OperationalError as exc:
                logger.warning("channel layer cannot LISTEN yet (%s)", type(exc).__name__)
                delay = min(delay * 2, 30.0)
