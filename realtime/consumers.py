"""The metrics stream: `/ws/clinics/{org_id}/metrics` (protocol in realtime/PROTOCOL.md).

The socket is accepted first and refused afterwards with a close code, because a browser sees
only 1006 for a handshake that was turned down; only a bad Origin is turned down in the
handshake (`realtime.routing`), a cross-site page should learn nothing. Authorization is
`clinics.auth.websocket.authorize_socket`, the API's own token check and membership rules.

One timer task per connection sends heartbeats and enforces the deadlines (credentials, idle,
token expiry, maximum age); it sleeps until the nearest one. Everything sent to the client in
sequence goes through one lock, so events, replays and snapshots never interleave.

Events reach the connection through the process's hub (`realtime.hub`): the process, not each
connection, is the member of the organization's group, so a connection has no layer channel
of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from clinics.auth.websocket import SocketAccess, SocketRefused, authorize_socket, token_from_subprotocols
from realtime import protocol
from realtime.delivery import Inbox, Sequencer
from realtime.events import GROUP_MESSAGE, group_name
from realtime.hub import Hub, hub_for
from realtime.protocol import Limits, MessageBudget
from realtime.snapshot import snapshot_build
from routiq.api.envelope import utc_timestamp

logger = logging.getLogger(__name__)


class MetricsConsumer(AsyncWebsocketConsumer):
    access: SocketAccess | None
    sequencer: Sequencer | None
    hub: Hub | None

    # No layer alias of this name exists: Channels opens no channel per connection (the hub
    # listens for the process).
    channel_layer_alias = "realtime.hub:no-channel-per-connection"

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' own dispatch first hops to the database thread to close old connections,
        for every message; the handlers here use the database only through
        database_sync_to_async, which does that itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.org_id = str(self.scope["url_route"]["kwargs"]["org_id"])
        self.limits = Limits.from_settings()
        self.opened = self.last_heard = time.monotonic()
        self.budget = MessageBudget(burst=self.limits.burst, per_second=self.limits.per_second)
        self.access = None
        self.sequencer = None
        self.token_deadline: float | None = None
        self.next_heartbeat = self.opened + self.limits.heartbeat
        self.hub = None
        self.inbox = Inbox(self.realtime_event)
        self.closing = False
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()  # a deadline moved: the timer looks again
        offered = self.scope.get("subprotocols") or []
        await self.accept(subprotocol=protocol.APP_PROTOCOL if protocol.APP_PROTOCOL in offered else None)
        self.timer = asyncio.ensure_future(self._keep_time())
        token = token_from_subprotocols(self.scope)
        user = self.scope.get("user")
        if token or (user is not None and user.is_authenticated):
            await self._authenticate(token)
        # Otherwise the first message must be {"type": "auth", "token": ...} (see _keep_time).

    async def disconnect(self, code: int) -> None:
        self.closing = True
        if getattr(self, "timer", None) is not None:
            self.timer.cancel()
        self.inbox.close()
        if self.hub is not None:
            self.hub.leave(group_name(self.org_id), self)

    # --- credentials -----------------------------------------------------------------------------
    async def _authorize(self, token: str | None) -> SocketAccess | None:
        try:
            return await authorize_socket(self.scope, self.org_id, token=token)
        except SocketRefused as refused:
            await self._close(refused.close_code, refused.reason)
            return None

    def _set_token_deadline(self, access: SocketAccess) -> None:
        if access.token_expires_at is None:
            self.token_deadline = None  # a session: bounded by the maximum age
        else:
            left = access.token_expires_at + self.limits.token_grace - time.time()
            self.token_deadline = time.monotonic() + left
        self.wake.set()

    async def _authenticate(self, token: str | None) -> None:
        access = await self._authorize(token)
        if access is None:
            return
        async with self.lock:  # the snapshot goes first, before any heartbeat
            self.sequencer = Sequencer(self.org_id, last_seq=0, max_events=self.limits.resync_max_events)
            self.access = access
            self._set_token_deadline(access)
            # Joined before the snapshot's number is read: nothing after it can be missed.
            hub = hub_for(get_channel_layer())
            await hub.join(group_name(self.org_id), self)
            self.hub = hub
            await self._send_snapshot()

    async def _refresh(self, token: Any) -> None:
        if not isinstance(token, str) or not token:
            await self._error("bad_message", "auth needs a token")
            return
        access = await self._authorize(token)
        if access is None:
            return
        if access.user_label != self.access.user_label:
            await self._close(protocol.CLOSE_FORBIDDEN, "the token is another user's")
            return
        self.access = access
        self._set_token_deadline(access)
        await self._send({"type": "auth_ok", "expires_at": access.token_expires_at})

    # --- client messages ---------------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        self.last_heard = time.monotonic()
        if not self.budget.spend():
            await self._close(protocol.CLOSE_RATE_LIMITED, "too many messages")
            return
        if text_data is None:
            await self._close(protocol.CLOSE_UNSUPPORTED, "messages are JSON text")
            return
        if len(text_data) > protocol.MAX_CLIENT_MESSAGE_BYTES:
            await self._close(protocol.CLOSE_TOO_BIG, "message too big")
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self._error("bad_message", "a message is a JSON object with a type")
            return
        await self._handle(message)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.access is None:
            if kind == "auth" and isinstance(message.get("token"), str) and message["token"]:
                await self._authenticate(message["token"])
            else:
                await self._close(protocol.CLOSE_UNAUTHENTICATED, "authenticate first")
            return
        if kind == "ping":
            await self._send({"type": "pong", "seq": self.sequencer.last_seq, "at": utc_timestamp()})
        elif kind == "resync":
            since = message.get("since")
            if not isinstance(since, int) or isinstance(since, bool) or not 0 <= since < 2**63:
                await self._error("bad_message", "resync needs since: a sequence number")
                return
            await self._resync(since)
        elif kind == "auth":
            await self._refresh(message.get("token"))
        else:
            await self._error("unknown_type", f"unknown message type {kind[:40]!r}")

    async def _resync(self, since: int) -> None:
        async with self.lock:
            events = await self.sequencer.replay(since)
            if events is None:
                await self._send_snapshot()
                return
            for event in events:
                await self._send(event)
            await self._send({"type": "resynced", "since": since, "seq": self.sequencer.last_seq})

    # --- events from the group, through the hub ---------------------------------------------------
    def hub_message(self, message: dict[str, Any]) -> None:
        if message.get("type") == GROUP_MESSAGE and not self.closing:
            self.inbox.put(message)

    def hub_rejoined(self) -> None:
        if not self.closing:
            asyncio.ensure_future(self._check())

    async def _check(self) -> None:
        """The layer may have dropped copies: what the log has that the client has not."""
        try:
            async with self.lock:
                await self._deliver(await self.sequencer.check())
        except Exception:
            logger.exception("metrics stream of %s could not catch up after a rejoin", self.org_id)

    async def realtime_event(self, message: dict[str, Any]) -> None:
        if self.sequencer is None or self.closing:
            return
        async with self.lock:
            await self._deliver(await self.sequencer.arrived(message["event"]))

    async def _deliver(self, events: list[dict[str, Any]] | None) -> None:
        """Caller holds the lock."""
        if events is None:
            await self._send_snapshot()
            return
        for event in events:
            await self._send(event)

    async def _send_snapshot(self) -> None:
        """Caller holds the lock."""
        seq, text = await database_sync_to_async(snapshot_build)(self.org_id)
        self.sequencer.restart(seq)
        await self._send_text(text)

    # --- time ----------------------------------------------------------------------------------------
    async def _keep_time(self) -> None:
        try:
            while not self.closing:
                self.wake.clear()
                wake = await self._tick(time.monotonic())
                if wake is None:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), max(0.0, wake - time.monotonic()))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("metrics stream of %s failed", self.org_id)
            await self._close(protocol.CLOSE_SERVER_ERROR, "server error")

    async def _tick(self, now: float) -> float | None:
        """Enforce what is due; when to look again (None: the connection is closing)."""
        limits = self.limits
        if self.access is None:
            if now >= self.opened + limits.auth_timeout:
                await self._close(protocol.CLOSE_AUTH_TIMEOUT, "no credentials in time")
                return None
            return self.opened + limits.auth_timeout
        deadlines = {
            protocol.CLOSE_IDLE: (self.last_heard + limits.idle_timeout, "idle"),
            protocol.CLOSE_MAX_AGE: (self.opened + limits.max_age, "maximum age: reconnect"),
        }
        if self.token_deadline is not None:
            deadlines[protocol.CLOSE_TOKEN_EXPIRED] = (self.token_deadline, "token expired")
        for code, (deadline, reason) in deadlines.items():
            if now >= deadline:
                await self._close(code, reason)
                return None
        if now >= self.next_heartbeat:
            await self._heartbeat()
            self.next_heartbeat = now + limits.heartbeat
        return min(self.next_heartbeat, *(deadline for deadline, _ in deadlines.values()))

    async def _heartbeat(self) -> None:
        async with self.lock:
            # A lost last copy would otherwise wait for the next event to be noticed.
            await self._deliver(await self.sequencer.check())
            await self._send({"type": "heartbeat", "seq": self.sequencer.last_seq, "at": utc_timestamp()})

    # --- sending -------------------------------------------------------------------------------------
    async def _send(self, message: dict[str, Any]) -> None:
        await self._send_text(json.dumps(message, separators=(",", ":")))

    async def _send_text(self, text: str) -> None:
        if self.closing:
            return
        try:
            await self.send(text_data=text)
        except OSError:  # the client went away (the server's ClientDisconnected): nothing wrong here
            logger.debug("metrics stream of %s: the client is gone", self.org_id)
            self.closing = True

    async def _error(self, code: str, message: str) -> None:
        await self._send({"type": "error", "code": code, "message": message})

    async def _close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        await self.close(code=code, reason=reason[:120])
